"""bench/__main__.py's bookkeeping (the measurements themselves run in `python3 build.py bench`):
a quick run prints the table and what it is doing but leaves docs/ alone; a full run writes them.
The stages that measure are replaced here by fixed figures, so this runs in a second."""

import json

import pytest

import bench.__main__ as bench_main


def figures(tok_s):
    return {"decode_tok_s": tok_s, "prefill_tok_s": {"16": 1.0, "128": 2.0, "512": 3.0},
            "ms_per_token_at": {"10": 1.0}, "ms_per_token_series": [[0, 1.0], [10, 1.1]],
            "ready_cold": {"wall_s": 4.0}, "ready_warm": {"wall_s": 2.0}, "peak_rss_mb": 100.0}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "BENCHMARKS.md").write_text(f"# Benchmarks\n\nkept\n\n{bench_main.BEGIN}\nstale figures\n{bench_main.END}\n")
    monkeypatch.setattr(bench_main, "ROOT", tmp_path)
    monkeypatch.setattr(bench_main, "DOC", docs / "BENCHMARKS.md")
    monkeypatch.setattr(bench_main, "PLOT", docs / "benchmarks.png")
    monkeypatch.setattr(bench_main, "PEER_PLOT", docs / "benchmarks-peer.png")
    monkeypatch.setattr(bench_main, "RESULTS", tmp_path / ".cache" / "results.json")
    monkeypatch.setattr(bench_main, "QUICK_RESULTS", tmp_path / ".cache" / "quick-results.json")
    monkeypatch.setattr(bench_main, "default_model_dir", lambda: tmp_path / "demo")
    monkeypatch.setattr(bench_main, "ensure_130m_shaped", lambda: tmp_path / "big")
    monkeypatch.setattr(bench_main, "ensure_mamba2_130m_shaped", lambda: tmp_path / "big2")
    runs = []

    def browser_run(models, n_tokens, log):
        runs.append(("browser", n_tokens))
        log("browser stage")
        return {name: figures(10.0) for name in models}

    def native(engine, folder, n_tokens):
        runs.append((engine, n_tokens))
        return figures(20.0)

    def shard_run(name, folder, n_tokens, prompt_tokens, log):
        log(f"shard stage: {name}, {n_tokens} tokens")
        one = {"workers": 1, "ready_s": 4.0, "prefill_tok_s": 10.0, "n_prompt": prompt_tokens, "decode_tok_s": 10.0,
               "heap_mb": [600.0]}
        return {"1 worker, isolated": one, "2 workers, shared memory (isolated)":
                {**one, "workers": 2, "decode_tok_s": 13.0, "heap_mb": [330.0, 330.0]}}

    def peer_run(n_tokens, log):
        runs.append(("wllama", n_tokens))
        log("peer stage")
        peer = {"decode_tok_s": 10.0, "ready_s": 1.0, "read_s": 0.5, "renderer_peak_mb": 300.0}
        ours = {**peer, "decode_tok_s": 15.0}
        return ({"Q8_0": {"ours": ours, "ours_numpy": {**peer, "decode_tok_s": 7.5}, "wllama_1": peer,
                          "wllama_2": {**peer, "decode_tok_s": 20.0}}},
                {"Q8_0": 143_000_000})

    monkeypatch.setattr(bench_main.browser, "run", browser_run)
    monkeypatch.setattr(bench_main.shard_page, "run", shard_run)
    monkeypatch.setattr(bench_main, "native", native)
    monkeypatch.setattr(bench_main.peer, "run", peer_run)
    return tmp_path, runs


def test_a_quick_run_prints_its_stages_and_the_table_but_writes_no_docs(sandbox, capsys):
    tmp_path, runs = sandbox
    before = (tmp_path / "docs" / "BENCHMARKS.md").read_bytes()
    bench_main.main(["--quick"])
    out = capsys.readouterr().out
    assert {n for _, n in runs} == {bench_main.QUICK_TOKENS} and len(runs) == 1 + 2 * 3  # browser once; 2 native engines x 3 models
    assert (tmp_path / "docs" / "BENCHMARKS.md").read_bytes() == before
    assert not (tmp_path / "docs" / "benchmarks.png").exists()
    assert "quick run: 300 tokens per engine and model" in out and "browser stage" in out
    assert "mamba_wasm native, demo: prefill and 300 decoded tokens" in out
    assert "| demo | decode tok/s (median) | 10.0 | 20.0 | 20.0 | 1.00x |" in out
    assert "docs/BENCHMARKS.md and docs/benchmarks.png left unchanged" in out
    assert f"shard stage: demo, {bench_main.SHARD_QUICK_TOKENS} tokens" in out  # quick: the demo model
    assert "| 2 workers, shared memory (isolated) | 2 | 13.00 | 1.30x |" in out and "330 / 330" in out
    assert json.loads((tmp_path / ".cache" / "quick-results.json").read_text())["n_tokens"] == 300
    assert not (tmp_path / ".cache" / "results.json").exists()  # --report-only never sees a quick run


def test_a_full_run_writes_the_docs_and_the_plot(sandbox, capsys):
    tmp_path, runs = sandbox
    bench_main.main(["--tokens", "50"])
    doc = (tmp_path / "docs" / "BENCHMARKS.md").read_text()
    assert "kept" in doc and "stale figures" not in doc and "`python3 build.py bench --tokens 50`" in doc
    assert "Split across workers (mamba-130m-shaped" in doc
    assert (tmp_path / "docs" / "benchmarks.png").stat().st_size > 0
    assert ("wllama", bench_main.PEER_TOKENS) in runs  # the peer is part of a full run, at its own length
    assert "| Q8_0 (143 MB) | decode tok/s | 15.0 | 7.5 | 10.0 | 20.0 | 1.50x | 0.75x | 2.00x |" in doc
    assert "Q8_0: our decode / wllama's single thread = 1.50x (target ≥ 1.2x: met)" in doc
    assert (tmp_path / "docs" / "benchmarks-peer.png").stat().st_size > 0
    assert "wrote docs/BENCHMARKS.md and the plots beside it" in capsys.readouterr().out


def test_the_peer_alone_prints_its_table_and_writes_no_docs(sandbox, capsys):
    tmp_path, runs = sandbox
    before = (tmp_path / "docs" / "BENCHMARKS.md").read_bytes()
    bench_main.main(["--quick", "--engines", "wllama"])
    out = capsys.readouterr().out
    assert runs == [("wllama", bench_main.PEER_TOKENS)]  # no checkpoint made, no other engine run
    assert "| Q8_0 (143 MB) | decode tok/s | 15.0 | 7.5 | 10.0 | 20.0 | 1.50x | 0.75x | 2.00x |" in out
    assert (tmp_path / "docs" / "BENCHMARKS.md").read_bytes() == before
    assert not (tmp_path / "docs" / "benchmarks-peer.png").exists()
