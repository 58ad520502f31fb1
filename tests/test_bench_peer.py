"""bench/peer.py's pure parts: the ids wllama must not sample, how decode speed is read from what
each page reports, the table and its verdicts, a renderer's peak RSS, and which URLs the peer's
server maps to files. The measurements themselves run in `python3 build.py bench --engines wllama`."""

import os

import pytest

from bench import peer, peer_site
from bench.peer_vocab import banned_ids, not_utf8_alone
from mamba_wasm.tokenizer import BYTE_CHARS, Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_GGUF = os.path.join(HERE, "fixtures", "gguf", "tokenizer.gguf")


def test_banned_ids_are_exactly_the_tokens_that_are_not_utf8_alone():
    tokenizer = Tokenizer.from_gguf(open(TOKENIZER_GGUF, "rb").read())
    banned = set(banned_ids(TOKENIZER_GGUF))
    assert banned == set(not_utf8_alone(tokenizer))
    for token_id in range(tokenizer.vocab_size):
        data = tokenizer.token_bytes(token_id)
        try:
            data.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert (token_id in banned) == (not valid), (token_id, data)
    lone_continuation = tokenizer.token_to_id(BYTE_CHARS[0x80])  # a byte that never starts a character
    plain = tokenizer.token_to_id("a")
    assert lone_continuation in banned and plain is not None and plain not in banned


def test_decode_speed_counts_the_tokens_after_the_first_over_the_time_since_it():
    assert peer.decode_tok_s([(1, 1000.0), (5, 1400.0), (11, 2000.0)]) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="too few timed tokens"):
        peer.decode_tok_s([(1, 1000.0), (1, 1000.0)])


def test_wllama_figures_time_its_stream_like_our_messages():
    result = {"arrivals": [500.0, 600.0, 1500.0, 1510.0], "fetch_ms": 200.0, "load_ms": 800.0,
              "timings": {"predicted_n": 128, "predicted_per_second": 120.0}, "isolated": True, "multithread": False}
    figures = peer.wllama_figures(result)
    assert figures["decode_tok_s"] == pytest.approx(127 / 1.010)
    assert figures["ready_s"] == pytest.approx(1.0) and figures["read_s"] == pytest.approx(0.8)
    assert figures["own_decode_tok_s"] == 120.0 and figures["n_tokens"] == 128


def test_our_figures_come_from_the_token_messages_and_the_ready_message():
    messages = [{"type": "started", "n_prompt": 2, "at": 0.0},
                {"type": "token", "n_generated": 1, "at": 100.0, "wasm_heap_bytes": 2**20},
                {"type": "token", "n_generated": 64, "at": 700.0, "wasm_heap_bytes": 3 * 2**20},
                {"type": "done", "n_generated": 128, "at": 1370.0, "wasm_heap_bytes": 2 * 2**20}]
    ready = {"worker_ms": 9000.0, "phases_ms": {"model_ms": 1500.0}}
    figures = peer.ours_figures(messages, ready)
    assert figures["decode_tok_s"] == pytest.approx(100.0)
    assert figures["ready_s"] == 9.0 and figures["read_s"] == 1.5 and figures["wasm_heap_mb"] == 3.0


def test_the_table_puts_the_ratios_beside_and_says_whether_each_target_is_met():
    def engine(tok_s):
        return {"decode_tok_s": tok_s, "ready_s": 2.0, "read_s": 1.0, "renderer_peak_mb": 500.0}

    results = {"F32": {"ours": engine(20.0), "ours_numpy": engine(16.0), "wllama_1": engine(40.0), "wllama_2": engine(50.0)},
               "F16": {"ours": engine(20.0), "wllama_1": engine(10.0)},
               "Q8_0": {"ours": engine(20.0), "ours_numpy": engine(10.0), "wllama_1": engine(18.0), "wllama_2": engine(25.0)}}
    text = peer.table(results, {"F32": 518e6, "F16": 262e6, "Q8_0": 143e6})
    assert "| F32 (518 MB) | decode tok/s | 20.0 | 16.0 | 40.0 | 50.0 | 0.50x | 0.40x | 1.25x |" in text
    assert "| F16 (262 MB) | decode tok/s | 20.0 | — | 10.0 | — | 2.00x | — | — |" in text  # columns that did not run
    assert "| Q8_0 (143 MB) | peak renderer RSS (MB) | 500 | 500 | 500 | 500 |  |  |  |" in text
    assert "Q8_0: our decode / wllama's single thread = 1.11x (target ≥ 1.2x: NOT met)" in text
    assert "F16: our decode / wllama's single thread = 2.00x (target ≥ 1.5x: met)" in text


def test_peak_rss_is_read_from_vmhwm():
    assert peer.read_peak_rss_mb("Name:\tchromium\nVmHWM:\t  204800 kB\nVmRSS:\t 1024 kB\n") == 200.0
    assert peer.read_peak_rss_mb("Name:\tzombie\n") is None


def test_the_peer_server_maps_only_its_own_files():
    ggufs = {"m-Q8_0.gguf": "/data/m-Q8_0.gguf"}
    assert peer_site.resolve("/", ggufs) == peer_site.PAGE / "index.html"
    assert peer_site.resolve("/peer.js?x=1", ggufs) == peer_site.PAGE / "peer.js"
    assert peer_site.resolve("/wllama/wasm/wllama.wasm", ggufs) == peer_site.WLLAMA_ESM / "wasm" / "wllama.wasm"
    assert peer_site.resolve("/gguf/m-Q8_0.gguf", ggufs) == "/data/m-Q8_0.gguf"
    for path in ("/wllama/../../package.json", "/wllama//index.js", "/gguf/other.gguf", "/README.md"):
        assert peer_site.resolve(path, ggufs) is None, path
