"""Bad input at the package's edges (issue 7, parts 2 and 3) not covered by the per-module tests.

Each fault gets a documented error (a MambaWasmError) with a specific message, or bounded time
and memory. Tests named `..._fuzz_...` are regressions for crashes the fuzz run
(scripts/fuzz.py) found: before the fix each raised a non-documented exception or hung.
docs/RELIABILITY.md maps every fault to its test.
"""

import json
import os
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm import (
    CheckpointError,
    ConfigError,
    InputError,
    SafetensorsError,
    Session,
    StreamingDetokenizer,
    Tokenizer,
    TokenizerError,
    generation,
    load_model_from_files,
)
from mamba_wasm.safetensors import MAX_HEADER_BYTES, read_safetensors

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from fuzz import HF_CONFIG, ORIGINAL_CONFIG, checkpoint_tensors, safetensors_bytes  # noqa: E402

TINY_RANDOM = Path(__file__).resolve().parent.parent / "models" / "tiny-random"
DEEP = "[" * 100_000 + "]" * 100_000  # deeper than Python's recursion limit
MB = 1 << 20


@pytest.fixture(scope="module")
def model():
    return mamba_wasm.load_model(TINY_RANDOM)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_file(TINY_RANDOM / "tokenizer.json")


def tokenizer_spec():
    return json.loads((TINY_RANDOM / "tokenizer.json").read_text(encoding="utf-8"))


def checkpoint_files(config=HF_CONFIG):
    embedding = "backbone.embeddings.weight" if "hidden_size" in config else "backbone.embedding.weight"
    tensors = checkpoint_tensors(embedding, "F32")
    return {"config.json": json.dumps(config).encode(), "model.safetensors": safetensors_bytes(tensors)}


def peak_allocation(function):
    """(result or exception, peak bytes Python allocated while running function)."""
    tracemalloc.start()
    try:
        result = function()
    except Exception as exc:  # noqa: BLE001 - returned for the caller to check
        result = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak


# -- files: safetensors ------------------------------------------------------------------------------


def test_header_over_100_mb_is_refused_before_allocating():
    """The length prefix claims 100,000,001 bytes and the buffer really is that big: the reader
    must refuse from the 8-byte prefix alone, without copying or parsing the header."""
    buffer = bytearray(8 + MAX_HEADER_BYTES + 1)
    buffer[:8] = struct.pack("<Q", MAX_HEADER_BYTES + 1)
    error, peak = peak_allocation(lambda: read_safetensors(buffer, "big.safetensors"))
    assert isinstance(error, SafetensorsError) and "exceeds the 100000000-byte limit" in str(error)
    assert peak < 1 * MB, peak


def test_fuzz_deeply_nested_header_is_a_safetensors_error():
    raw = DEEP.encode()
    with pytest.raises(SafetensorsError, match="nests deeper than a tensor table"):
        read_safetensors(struct.pack("<Q", len(raw)) + raw)


@pytest.mark.parametrize("dtype", [["F32"], {"F32": 1}, 32, None])
def test_fuzz_dtype_that_is_not_a_string(dtype):
    header = json.dumps({"w": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}).encode()
    with pytest.raises(SafetensorsError, match="dtype .* is not supported"):
        read_safetensors(struct.pack("<Q", len(header)) + header + bytes(4))


@pytest.mark.parametrize("shape, nbytes", [([0, 2**70], 0), ([0, 2**62, 4], 0), ([1] * 65, 4)])
def test_fuzz_shape_beyond_numpy_limits(shape, nbytes):
    """Zero-sized or one-element shapes pass the size check, then NumPy cannot represent them."""
    header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    with pytest.raises(SafetensorsError, match="'w'.*beyond NumPy's limits"):
        read_safetensors(struct.pack("<Q", len(header)) + header + bytes(nbytes))


# -- files: config.json and the shard index ----------------------------------------------------------


def test_fuzz_deeply_nested_config_is_a_config_error():
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        load_model_from_files({**checkpoint_files(), "config.json": DEEP.encode()}, "m")


def test_fuzz_deeply_nested_index_is_a_checkpoint_error():
    files = {"config.json": checkpoint_files()["config.json"], "model.safetensors.index.json": DEEP.encode()}
    with pytest.raises(CheckpointError, match="index.json: not valid JSON"):
        load_model_from_files(files, "m")


def test_fuzz_a_billion_layers_fail_fast():
    """config.json claiming 10**9 layers used to build 9 * 10**9 tensor names (a hang, then MemoryError)."""
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="says 1000000000 layers, but the file holds only 22 tensors"):
        load_model_from_files(checkpoint_files({**HF_CONFIG, "num_hidden_layers": 10**9}), "m")
    assert time.perf_counter() - started < 5


def test_fuzz_zero_pad_vocab_multiple_is_a_config_error():
    config = {**ORIGINAL_CONFIG, "pad_vocab_size_multiple": 0}
    with pytest.raises(ConfigError, match="pad_vocab_size_multiple must be positive"):
        load_model_from_files(checkpoint_files(config), "m")


@pytest.mark.parametrize("config", [
    {**HF_CONFIG, "hidden_size": 10**400, "time_step_rank": "auto"},  # dt_rank 'auto' = ceil(d / 16) overflowed a float
    {**ORIGINAL_CONFIG, "vocab_size": 10**400},  # padding the vocabulary overflowed a float
])
def test_fuzz_huge_sizes_are_shape_mismatches_not_overflows(config):
    with pytest.raises(CheckpointError, match="expected"):
        load_model_from_files(checkpoint_files(config), "m")


# -- files: tokenizer.json ---------------------------------------------------------------------------

import tokenizers


def test_wordpiece_and_unigram_tokenizers_are_named_as_unsupported():
    """Real files written by HF tokenizers (a BERT-style WordPiece, a SentencePiece-style Unigram):
    the message names the model type, not the first section that differs."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    wordpiece = tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer()
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    unigram = tokenizers.Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0, False))
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.decoder = decoders.Metaspace()
    for hf, kind in ((wordpiece, "WordPiece"), (unigram, "Unigram")):
        expected = f"^m/tokenizer.json: model type '{kind}' is not supported; supported: BPE"
        with pytest.raises(TokenizerError, match=expected):
            Tokenizer.from_json(hf.to_str(), "m/tokenizer.json")


def test_fuzz_deeply_nested_tokenizer_json_is_a_tokenizer_error():
    with pytest.raises(TokenizerError, match="not valid JSON"):
        Tokenizer.from_json(DEEP)


def _edited_spec(edit):
    spec = tokenizer_spec()
    edit(spec)
    return json.dumps(spec)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["model"].update(unk_token=["<unk>"]), "unk_token"),
    (lambda s: s.update(pre_tokenizer={"type": "Sequence", "pretokenizers": {"a": 1}}), "unsupported pre_tokenizer"),
    (lambda s: s.update(normalizer={"type": "Sequence", "normalizers": 5}), "unsupported normalizer"),
    (lambda s: s["added_tokens"].append({"id": -1, "content": "x"}), "non-negative integer id"),
    (lambda s: s["added_tokens"].append({"id": 600, "content": "\udfff"}), "lone surrogate"),
    (lambda s: s["model"]["vocab"].update({"\ud800": 600}), "lone surrogate"),
])
def test_fuzz_malformed_tokenizer_sections(edit, message):
    """JSON's \\udfff escape yields a lone surrogate, which has no UTF-8 (decode used to crash on it)."""
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.from_json(_edited_spec(edit))


# -- generation: prompts and parameters --------------------------------------------------------------


@pytest.mark.parametrize("sampling", [
    {"temperature": None}, {"temperature": "0.8"}, {"top_p": None}, {"repetition_penalty": [1]},
    {"temperature": True}, {"top_k": 2.5}, {"seed": "1"}, {"temperature": float("nan")},
])
def test_fuzz_sampling_parameters_that_are_not_numbers(model, tokenizer, sampling):
    """The page sends what its inputs hold: an empty field arrives as null, NaN, or a string."""
    session = Session(model, tokenizer)
    with pytest.raises(InputError, match=next(iter(sampling))):
        session.start("hello", 3, **sampling)
    session.start("hello", 3, temperature=0)
    assert isinstance(session.advance(3), str) and session.done


def test_prompt_of_only_special_tokens(model, tokenizer):
    """Legal: each <|endoftext|> is one token; the model continues after them."""
    session = Session(model, tokenizer)
    assert session.start("<|endoftext|><|endoftext|>", 8, temperature=0) == 2
    assert tokenizer.encode("<|endoftext|><|endoftext|>") == [tokenizer.eos_token_id] * 2
    text = session.advance(8)
    assert isinstance(text, str) and session.done


UNICODE_EDGES = {
    "NUL": "a\0b\0",
    "RTL marks and Arabic": "\u200fمرحبا\u202e abc \u202c\u200e",
    "zero-width and BOM": "\ufeffa\u200bb\u200d",
    "emoji with modifiers": "\U0001F44D\U0001F3FD \U0001F469\u200d\U0001F4BB",
    "combining marks": "\u00e9\u0301\u0301 x\u0323\u0301",  # already NFC, so encode keeps it
    "noncharacters and private use": "\uffff\U0010FFFF\ue000",
}


@pytest.mark.parametrize("text", UNICODE_EDGES.values(), ids=UNICODE_EDGES.keys())
def test_unicode_edge_cases_round_trip_and_generate(model, tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text
    session = Session(model, tokenizer)
    session.start(text, 4, seed=0)
    assert isinstance(session.advance(4), str)


def test_lone_surrogates_become_replacement_characters_not_errors(model, tokenizer):
    """Chosen behaviour: a lone surrogate (possible in a JavaScript string) encodes as U+FFFD,
    exactly as the browser's TextEncoder would send it; HF tokenizers cannot take one at all."""
    assert tokenizer.encode("\ud800") == tokenizer.encode("\ufffd")
    assert tokenizer.decode(tokenizer.encode("x\udfffy")) == "x\ufffdy"
    session = Session(model, tokenizer)
    assert session.start("\ud800", 2, seed=0) == len(tokenizer.encode("\ufffd"))


def _mixed_text(n_chars):
    line = "The quick brown fox jumps over the lazy dog. Émile a dit : « bonjour » 日本語 🙂\n"
    return (line * (n_chars // len(line) + 1))[:n_chars]


def test_100k_character_prompt_over_the_token_limit_is_refused_quickly(model, tokenizer):
    """Mixed text costs ~0.9 tokens per character with tiny-random's 512-token vocabulary: over
    MAX_PROMPT_TOKENS, so the answer is a clear limit, before any model work."""
    session = Session(model, tokenizer)
    started = time.perf_counter()
    error, peak = peak_allocation(lambda: session.start(_mixed_text(100_000), 5))
    seconds = time.perf_counter() - started
    print(f"\n100k-character prompt refused in {seconds:.2f} s, peak allocation {peak / MB:.1f} MB")
    assert isinstance(error, InputError) and f"the limit is {generation.MAX_PROMPT_TOKENS}" in str(error)
    assert peak < 100 * MB
    assert seconds < 30
    assert session.start("still usable", 2, temperature=0) and isinstance(session.advance(2), str)


def test_100k_character_prompt_under_the_limit_runs_in_bounded_memory(model, tokenizer):
    """Common words merge well: 100k characters become ~29k tokens, prefilled in blocks of
    PREFILL_BLOCK, so memory does not grow with the prompt. The time is printed, not asserted."""
    prompt = ("the the and of to in " * 5_000)[:100_000]
    session = Session(model, tokenizer)
    started = time.perf_counter()
    n_prompt, peak = peak_allocation(lambda: session.start(prompt, 5, temperature=0))
    seconds = time.perf_counter() - started
    print(f"\n100k-character prompt: {n_prompt} tokens prefilled in {seconds:.1f} s (under tracemalloc), "
          f"peak allocation {peak / MB:.1f} MB")
    assert isinstance(n_prompt, int) and n_prompt < generation.MAX_PROMPT_TOKENS
    assert peak < 100 * MB
    assert isinstance(session.advance(5), str)


def test_20000_token_generation_has_flat_memory_and_time(model, tokenizer, monkeypatch):
    """Mamba's state has a fixed size. What may grow: the Session's list of generated ids (one
    int each). Measured with tracemalloc after token 1,000 and after token 20,000."""
    monkeypatch.setattr(Tokenizer, "eos_token_id", property(lambda self: None))  # never stop early
    session = Session(model, tokenizer)
    session.start("Once upon a time", 20_000, seed=0)
    tracemalloc.start()
    seconds_per_1000 = []
    pieces_chars = 0
    for block in range(20):
        started = time.perf_counter()
        for _ in range(100):
            pieces_chars += len(session.advance(10))
        seconds_per_1000.append(time.perf_counter() - started)
        if block == 0:
            after_1000 = tracemalloc.get_traced_memory()[0]
    after_20000 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    growth = after_20000 - after_1000
    first, last = np.median(seconds_per_1000[1:5]), np.median(seconds_per_1000[-4:])
    print(f"\n20,000 tokens: memory after 1,000 {after_1000 / 1024:.0f} KiB, after 20,000 "
          f"{after_20000 / 1024:.0f} KiB (+{growth / 1024:.0f} KiB); "
          f"ms per 1,000 tokens, early {first * 1000:.0f}, late {last * 1000:.0f}")
    assert session.done and session.n_generated == 20_000 and pieces_chars > 0
    assert growth < 19_000 * 64, growth  # the generated-ids list; anything per-token would be larger
    assert last < 3 * first  # loose: a shared machine's noise, not a benchmark


def test_streaming_detokenizer_survives_a_bad_id_mid_stream(tokenizer):
    """The worker may pass a corrupt id; the stream refuses it and carries on intact."""
    smile = tokenizer.encode("🙂")
    detok = StreamingDetokenizer(tokenizer)
    text = detok.push(smile[0])
    with pytest.raises(InputError):
        detok.push(10**9)
    text += "".join(detok.push(i) for i in smile[1:]) + detok.flush()
    assert text == "🙂"
