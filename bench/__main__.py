"""Run every benchmark side by side, print one table, write docs/BENCHMARKS.md and a plot.

    python3 build.py bench [--tokens N]   the record: updates docs/BENCHMARKS.md and docs/benchmarks.png
    python3 build.py bench --quick        a smoke run of 300 tokens: prints the table, writes no docs
    python3 build.py bench --models NAME ... --engines ENGINE ...   a part of the run: writes no docs
    python3 build.py bench --engines wllama   the peer alone (bench/peer.py): writes no docs
    python3 build.py bench --big ...      also a model over one heap's limit on 2 workers (bench/shard_big.py:
                                          a 3.2 GB checkpoint, 1,000 tokens; long)

In one run, on the same checkpoints (the site's default model and random ones shaped like
mamba-130m and like mamba2-130m): (a) mamba_wasm in headless Chromium through the real page and
worker, (b) mamba_wasm natively, (c) HF transformers on the CPU. Each native engine runs in its own
process, whose peak RSS (VmHWM) is its own. Then (d) the peer, wllama (llama.cpp in WebAssembly),
beside our page on the mamba-130m-shaped model's .gguf files (bench/peer.py; not in --quick unless
asked for with --engines wllama). The machines are noisy, so read the ratios between columns of
one run.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from . import browser, peer, shard_big, shard_page
from .models import ROOT, default_model_dir, ensure_130m_shaped, ensure_mamba2_130m_shaped

DOC = ROOT / "docs" / "BENCHMARKS.md"
PLOT = ROOT / "docs" / "benchmarks.png"
PEER_PLOT = ROOT / "docs" / "benchmarks-peer.png"
RESULTS = ROOT / ".cache" / "bench" / "results.json"  # the last full run: --report-only redoes its docs
QUICK_RESULTS = ROOT / ".cache" / "bench" / "quick-results.json"
QUICK_TOKENS = 300
# The model split across workers (bench/shard_page.py): the 130m-shaped model, or in a quick run the demo model.
SHARD_TOKENS, SHARD_PROMPT, SHARD_QUICK_TOKENS, SHARD_QUICK_PROMPT = 200, 128, 60, 64
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ENGINES = ("browser", "mamba_wasm", "transformers")  # the columns of the main table
PEER = "wllama"  # its own table (bench/peer.py)
PEER_TOKENS = 128  # decoded per file and engine, as issue 17 measured them


# Decoding is memory-bound mat-vec work: one BLAS thread does it as fast as two on an idle machine,
# and a second thread fighting any other load made it 6x slower here (2.9 vs 19.1 tok/s,
# mamba-130m-shaped). transformers keeps PyTorch's default of 2 threads.
NATIVE_ENV = {"mamba_wasm": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}, "transformers": {}}
STARTED = time.monotonic()


def log(message):
    print(f"[bench {time.monotonic() - STARTED:6.0f} s] {message}", flush=True)


def native(engine, model_dir, n_tokens):
    command = [sys.executable, "-m", "bench.native", engine, str(model_dir), "--tokens", str(n_tokens)]
    env = {**os.environ, **NATIVE_ENV[engine]}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} on {model_dir} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt(value, digits=1):
    return "—" if value is None else f"{value:,.{digits}f}"


def table(results, models):
    rows = ["| model | figure | browser (Chromium) | mamba_wasm native | transformers (CPU) | native / transformers |",
            "|---|---|---:|---:|---:|---:|"]
    for name in models:
        r = {engine: results[engine].get(name) for engine in ENGINES}

        def row(label, pick, digits=1, ratio=False):
            values = [pick(r[e]) if r[e] else None for e in ENGINES]  # None: that engine did not run
            ratio_text = f"{values[1] / values[2]:.2f}x" if ratio and values[1] and values[2] else ""
            rows.append(f"| {name} | {label} | " + " | ".join(fmt(v, digits) for v in values) + f" | {ratio_text} |")

        row("decode tok/s (median)", lambda x: x["decode_tok_s"], ratio=True)
        row("decode tok/s, token view shown (above: views hidden)", lambda x: x.get("decode_tok_s_views_shown"))
        for length in map(str, (16, 128, 512)):
            row(f"prefill tok/s, {length}-token prompt", lambda x: _nearest(x["prefill_tok_s"], int(length)), ratio=True)
        for probe in ("10", "1000", "4000"):
            row(f"ms per token at token {probe}", lambda x: x["ms_per_token_at"].get(probe), 2)
        row("time to ready, cold (s)", lambda x: x.get("ready_cold", {}).get("wall_s"), 2)
        row("time to ready, warm, normal start (s)", lambda x: x.get("ready_warm_normal", {}).get("wall_s"), 2)
        row("time to ready, warm, Python from the snapshot (s)", lambda x: x.get("ready_warm", {}).get("wall_s"), 2)
        row("bare loadPyodide + import numpy, same files (s)", lambda x: x.get("bare_start_s"), 2)
        row("peak memory (MB): WASM heap / RSS", lambda x: x.get("peak_wasm_heap_mb") or x.get("peak_rss_mb"), 0)
    return "\n".join(rows + _architecture_ratio(results))


def _architecture_ratio(results):
    """Mamba-2's browser time per token against Mamba-1's at the same size (issue 11's target: <= 1.3x)."""
    if not {"mamba-130m-shaped", "mamba2-130m-shaped"} <= set(results["browser"]):
        return []
    speed = {name: results["browser"][name]["decode_tok_s"] for name in ("mamba-130m-shaped", "mamba2-130m-shaped")}
    ratio = speed["mamba-130m-shaped"] / speed["mamba2-130m-shaped"]
    return ["", f"Browser decode, time per token: mamba2-130m-shaped / mamba-130m-shaped = {ratio:.2f}x (same run)."]


def _nearest(by_length, length):
    """Browser prompts tokenize to about, not exactly, the asked length."""
    if not by_length:
        return None
    key = min(by_length, key=lambda k: abs(int(k) - length))
    return by_length[key]


def plot(results, models):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.25
    for i, engine in enumerate(ENGINES):
        values = [results[engine][m]["decode_tok_s"] for m in models]
        axes[0].bar([j + i * width for j in range(len(models))], values, width, label=engine)
    axes[0].set_xticks([j + width for j in range(len(models))], models)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("decode tokens/s (log)")
    axes[0].legend()
    for name in models:
        series = results["browser"][name]["ms_per_token_series"]
        axes[1].plot([n for n, _ in series], [ms for _, ms in series], label=f"{name} (browser)")
    axes[1].set_xlabel("token index")
    axes[1].set_ylabel("ms per token")
    axes[1].set_yscale("log")
    axes[1].legend()
    axes[1].set_title("time per token stays flat")
    fig.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def peer_section(peer_results):
    """The peer's heading, what was run, and its table."""
    return (f"### The peer: wllama {peer.wllama_version()} beside our page on the same .gguf files\n\n"
            "mamba-130m-shaped (random weights) converted by llama.cpp's convert_hf_to_gguf.py; "
            f"{peer_results['n_tokens']} tokens decoded greedily per file and engine, one after the other in one "
            "Chromium run (bench/peer.py says how each figure is taken). Our page multiplies with its SIMD kernels, "
            "keeping Q8_0 matrices as the file holds them and widening F16 ones to float32 at load; with ?kernel=0 "
            "(the page before the kernels) it dequantizes every matrix to float32 and NumPy multiplies; wllama's 2 "
            "threads need a cross-origin isolated page (COOP/COEP headers), which "
            "the bench's peer page has and our site does not need.\n\n"
            + peer.table(peer_results["results"], peer_results["sizes"]))


def plot_peer(peer_results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4))
    types = list(peer_results["results"])
    width = 0.2
    labels = ("our page", "our page, ?kernel=0", "wllama, 1 thread", "wllama, 2 threads")
    for i, (column, label) in enumerate(zip(peer.ENGINE_COLUMNS, labels)):
        values = [peer_results["results"][t].get(column, {}).get("decode_tok_s", 0) for t in types]
        axis.bar([j + i * width for j in range(len(types))], values, width, label=label)
    axis.set_xticks([j + 1.5 * width for j in range(len(types))], [f"{t} .gguf" for t in types])
    axis.set_ylabel(f"decode tokens/s ({peer_results['n_tokens']} tokens)")
    axis.set_title("mamba-130m-shaped, same files, same Chromium run")
    axis.legend()
    fig.tight_layout()
    fig.savefig(PEER_PLOT, dpi=110)


def write_doc(text):
    DOC.parent.mkdir(exist_ok=True)
    old = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 build.py bench")
    parser.add_argument("--tokens", type=int, default=4010, help="tokens generated per engine and model")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TOKENS} tokens: a smoke run, not for the "
                        "record (prints the table; docs/BENCHMARKS.md and docs/benchmarks.png are left as they are)")
    parser.add_argument("--report-only", action="store_true",
                        help="redo the table, plot and docs from the last run's .cache/bench/results.json")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="run only these checkpoints (default model's "
                        "name, mamba-130m-shaped, mamba2-130m-shaped); prints the table, writes nothing")
    parser.add_argument("--engines", nargs="+", choices=(*ENGINES, PEER),
                        help=f"run only these engines (default: all; --quick: all but {PEER}); prints the "
                        "tables, writes nothing")
    parser.add_argument("--big", action="store_true", help="also load and decode the mamba-790m-shaped model (3.2 GB "
                        "float32) split across 2 workers: 1,000 tokens, ~7 GB of RAM, long")
    args = parser.parse_args(argv)
    partial = bool(args.models) or (args.engines is not None and set(args.engines) != {*ENGINES, PEER})
    engines = args.engines or (list(ENGINES) if args.quick else [*ENGINES, PEER])
    if args.report_only:
        saved = json.loads(RESULTS.read_text())
        results, n_tokens, shards = saved["results"], saved["n_tokens"], saved.get("shards")
        for figures in results["browser"].values():
            figures["ms_per_token_at"] = browser.probes(figures["ms_per_token_series"])
    else:
        n_tokens = QUICK_TOKENS if args.quick else args.tokens
        if set(engines) & set(ENGINES):
            log(f"{'quick run' if args.quick else 'full run'}: {n_tokens} tokens per engine and model")
        demo = default_model_dir()
        makers = {demo.name: lambda: demo, "mamba-130m-shaped": ensure_130m_shaped,
                  "mamba2-130m-shaped": ensure_mamba2_130m_shaped}
        unknown = set(args.models or ()) - set(makers)
        if unknown:
            parser.error(f"unknown model {sorted(unknown)[0]!r}; choose from {', '.join(makers)}")
        models = {}
        if set(engines) & set(ENGINES):
            log("the 130m-shaped checkpoints (written once into .cache/bench/, with torch and transformers)")
            models = {name: make() for name, make in makers.items() if name in (args.models or makers)}
        results = {engine: {} for engine in ENGINES}
        shards = None
        if "browser" in engines:
            results["browser"] = browser.run(models, n_tokens, log)
            shard_model = demo.name if args.quick else "mamba-130m-shaped"
            if shard_model in models:
                log(f"browser, {shard_model}: 1 worker against 2 (the model split across workers)")
                figures = shard_page.run(shard_model, models[shard_model],
                                         *((SHARD_QUICK_TOKENS, SHARD_QUICK_PROMPT) if args.quick else (SHARD_TOKENS, SHARD_PROMPT)), log)
                shards = {"model": shard_model, "figures": figures}
        for engine in ("mamba_wasm", "transformers"):
            if engine in engines:
                for name, folder in models.items():
                    log(f"{engine} native, {name}: prefill and {n_tokens} decoded tokens (own process)")
                    results[engine][name] = native(engine, folder, n_tokens)
        if PEER in engines:
            peer_results, sizes = peer.run(PEER_TOKENS, log)
            results[PEER] = {"results": peer_results, "sizes": sizes, "n_tokens": PEER_TOKENS}
        saved = QUICK_RESULTS if args.quick or partial else RESULTS
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"results": results, "n_tokens": n_tokens, "shards": shards}))
    models = list(next((results[engine] for engine in ENGINES if results[engine]), {}))
    text = table(results, models) if models else ""
    shard_text = shard_page.table(shards["figures"], shards["model"]) if shards else ""
    peer_text = peer_section(results[PEER]) if results.get(PEER) else ""
    big_text = ""
    if args.big:
        log(f"browser, {shard_big.NAME}: over one heap's limit, on 2 workers, 1,000 tokens")
        big_text = shard_big.table(shard_big.run(2, 1000, log), 100)
    print("\n\n".join(part for part in (text, shard_text, big_text, peer_text) if part))
    if args.quick or partial:
        log(f"{'quick' if args.quick else 'partial'} run: {DOC.relative_to(ROOT)} and {PLOT.relative_to(ROOT)} "
            f"left unchanged (a full run updates them); figures saved in {QUICK_RESULTS.relative_to(ROOT)}")
        return
    plot(results, models)
    doc = (f"Measured by `python3 build.py bench --tokens {n_tokens}` ({n_tokens} generated tokens per "
           f"engine and model).\n\n{text}\n\n![decode speed and time per token](benchmarks.png)")
    if shard_text:
        doc += f"\n\n{shard_text}"
    if big_text:
        doc += f"\n\n{big_text}"
    if peer_text:  # absent from a results.json written before the peer was in the benchmark
        plot_peer(results[PEER])
        doc += f"\n\n{peer_text}\n\n![our page and wllama on the same .gguf files]({PEER_PLOT.name})"
    write_doc(doc)
    log(f"wrote {DOC.relative_to(ROOT)} and the plots beside it")


if __name__ == "__main__":
    main()
