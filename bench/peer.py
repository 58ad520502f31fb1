"""The peer in our benchmark: wllama (llama.cpp in WebAssembly, npm @wllama/wllama, pinned in
package.json's devDependencies) beside our page on the same .gguf files, in one Chromium run.

For each of the mamba-130m-shaped model's F32, F16 and Q8_0 files (bench/gguf.py converts them
with llama.cpp's own converter):
  - wllama at 1 thread and at 2 threads, each in a fresh browser context on bench/peer_site.py's
    cross-origin isolated page (2 threads need SharedArrayBuffer, so isolation): the file fetched
    and loaded, then 128 tokens decoded greedily, streamed;
  - our page (dist/, as users get it) opened on `?model=URL of the .gguf`, in a fresh browser
    context: Python starts, the file's header is read for the plan, the file is downloaded, saved
    in the Cache API and loaded: Q8_0 matrices kept as the file holds them, F16 ones widened to
    float32 at load, F32 ones as they are, all multiplied by the SIMD kernels (web/kernels/matmul.wat);
    then the same number of tokens, greedily;
  - our page again with `?kernel=0` (the page before the kernels: every matrix dequantized to
    float32 at load, NumPy's einsum multiplies), the before/after row.
Decode speed is timed the same way for both, from the page's side: tokens after the first over
the time from the first token's arrival to the last's. Memory is the peak RSS (VmHWM) of the tab's
renderer process, which holds the page, its workers and their WebAssembly memories.
"""

import json
import os
import time
import urllib.parse
from pathlib import Path

from . import browser
from .gguf import TYPES, ensure_gguf_files
from .peer_site import ROOT, PeerSite
from .peer_vocab import banned_ids

PROMPT = "The "
THREADS = (1, 2)
# Targets of issue 17: our page's decode over wllama's single thread, on the same file.
TARGETS = {"Q8_0": 1.2, "F16": 1.5}
ENGINE_COLUMNS = ("ours", "ours_numpy", "wllama_1", "wllama_2")
NOTES = ("Decode: tokens after the first over the time since it, as each page receives them. Ready, cold: "
         "wllama fetching the file and its loadModel (its WebAssembly start included); our page from the load "
         "request to ready in a fresh profile (Python's start, the header read for the plan, the download, saving "
         "it in the Cache API, loading). Of which the file into a model: wllama's loadModel; our worker's "
         "model phase (parse; with ?kernel=0 dequantize to float32). Peak renderer RSS: VmHWM of the tab's renderer process, "
         "which holds the page, its workers and their WebAssembly memories.")


# ---------------------------------------------------------------------------------------------
# Figures from what the pages report (pure: tests/test_bench_peer.py)
# ---------------------------------------------------------------------------------------------

def decode_tok_s(points):
    """Tokens per second after the first token: points are (tokens so far, arrival ms), in order."""
    (n_first, t_first), (n_last, t_last) = points[0], points[-1]
    if n_last <= n_first or t_last <= t_first:
        raise ValueError(f"too few timed tokens to measure decoding: {points[:3]} ... {points[-3:]}")
    return (n_last - n_first) / ((t_last - t_first) / 1000)


def wllama_figures(result):
    """The peer page's result (peer.js runWllama) as figures; its first streamed chunk holds token 1,
    its last arrives when token timings.predicted_n is done."""
    n_tokens = result["timings"]["predicted_n"]
    arrivals = result["arrivals"]
    return {"decode_tok_s": decode_tok_s([(1, arrivals[0]), (n_tokens, arrivals[-1])]),
            "own_decode_tok_s": result["timings"]["predicted_per_second"],  # llama.cpp's own timer
            "n_tokens": n_tokens, "ready_s": (result["fetch_ms"] + result["load_ms"]) / 1000,
            "read_s": result["load_ms"] / 1000,
            "isolated": result["isolated"], "multithread": result["multithread"]}


def ours_figures(messages, ready):
    """Our worker's messages of one generation (recorded with their arrival) and its ready message."""
    points = [(m["n_generated"], m["at"]) for m in messages if m["type"] in ("token", "done")]
    heaps = [m["wasm_heap_bytes"] for m in messages if "wasm_heap_bytes" in m]
    return {"decode_tok_s": decode_tok_s(points), "n_tokens": points[-1][0], "ready_s": ready["worker_ms"] / 1000,
            "read_s": ready["phases_ms"]["model_ms"] / 1000, "wasm_heap_mb": max(heaps) / 2**20}


def wllama_version():
    """The pinned version, from package.json's devDependencies."""
    return json.loads((ROOT / "package.json").read_text())["devDependencies"]["@wllama/wllama"]


def fmt(value, digits=1):
    return "—" if value is None else f"{value:,.{digits}f}"


def ratio(ours, theirs):
    return f"{ours / theirs:.2f}x" if ours and theirs else "—"


def table(results, sizes):
    """Markdown: one block of rows per file type, the ratios beside, then the targets' verdicts.
    results: {type: {column in ENGINE_COLUMNS: figures}}; sizes: {type: bytes}."""
    rows = ["| file | figure | our page (SIMD kernels) | our page, ?kernel=0 (NumPy, f32) | wllama, 1 thread "
            "| wllama, 2 threads (isolated) | ours / wllama 1 thread | ours / wllama 2 threads | kernels / ?kernel=0 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for type_name, by_engine in results.items():
        label = f"{type_name} ({sizes[type_name] / 1e6:,.0f} MB)"

        def row(figure, pick, digits=1, ratios=True):
            values = [pick(by_engine[c]) if c in by_engine else None for c in ENGINE_COLUMNS]
            shown = [ratio(values[0], values[2]), ratio(values[0], values[3]), ratio(values[0], values[1])] \
                if ratios else ["", "", ""]
            rows.append(f"| {label} | {figure} | " + " | ".join(fmt(v, digits) for v in values) + " | " + " | ".join(shown) + " |")

        row("decode tok/s", lambda f: f["decode_tok_s"])
        row("ready, cold (s)", lambda f: f["ready_s"], 2, ratios=False)
        row("of which the file into a model (s)", lambda f: f["read_s"], 2, ratios=False)
        row("peak renderer RSS (MB)", lambda f: f.get("renderer_peak_mb"), 0, ratios=False)
    verdicts = []
    for type_name, target in TARGETS.items():
        by_engine = results.get(type_name, {})
        if "ours" in by_engine and "wllama_1" in by_engine:
            got = by_engine["ours"]["decode_tok_s"] / by_engine["wllama_1"]["decode_tok_s"]
            verdicts.append(f"- {type_name}: our decode / wllama's single thread = {got:.2f}x "
                            f"(target ≥ {target}x: {'met' if got >= target else 'NOT met'}).")
    return "\n".join(rows + [""] + verdicts + ([""] if verdicts else []) + [NOTES])


def read_peak_rss_mb(status_text):
    """VmHWM of a /proc/PID/status text, in MB (2**20 bytes); None when absent."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


# ---------------------------------------------------------------------------------------------
# Chromium's renderer processes (Linux /proc): which are new, and their peak RSS
# ---------------------------------------------------------------------------------------------

_SELF = os.getpid()


def _renderers():
    """{pid: peak RSS MB} of the Chromium renderer processes started below this process."""
    parents, renderers = {}, set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if b"--type=renderer" in (proc / "cmdline").read_bytes():
                renderers.add(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue  # it ended while being read
    mine = {}
    for pid in renderers:
        ancestor = pid
        while ancestor in parents and ancestor != _SELF:
            ancestor = parents[ancestor]
        if ancestor == _SELF:
            try:
                mine[pid] = read_peak_rss_mb((Path("/proc") / str(pid) / "status").read_text())
            except OSError:
                continue
    return mine


class RendererMemory:
    """The peak RSS of the renderer processes a context starts between begin() and peak_mb()."""

    def begin(self):
        self.before = set(_renderers())

    def peak_mb(self):
        new = [mb for pid, mb in _renderers().items() if pid not in self.before and mb]
        return max(new) if new else None


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def run_wllama(browser_, site, name, n_threads, n_tokens, banned):
    context = browser_.new_context()
    memory = RendererMemory()
    memory.begin()
    page = context.new_page()
    page.set_default_timeout(browser.READY_TIMEOUT_S * 1000)
    page.goto(site.url)
    page.wait_for_function("typeof window.runWllama === 'function'")
    result = page.evaluate("(args) => window.runWllama(args)", {
        "url": f"{site.url}gguf/{name}", "nThreads": n_threads, "nTokens": n_tokens, "prompt": PROMPT,
        "bannedIds": banned})
    figures = wllama_figures(result)
    figures["renderer_peak_mb"] = memory.peak_mb()
    context.close()
    if n_threads > 1 and not (figures["isolated"] and figures["multithread"]):
        raise RuntimeError(f"wllama on {name}: asked for {n_threads} threads, but the page is "
                           f"{'' if figures['isolated'] else 'not '}cross-origin isolated and multithread is "
                           f"{figures['multithread']}")
    return figures


def run_ours(browser_, site, url, n_tokens, kernels=True):
    context = browser_.new_context()
    memory = RendererMemory()
    memory.begin()
    tab = browser.Tab(context, site.url)
    ready = tab.open(urllib.parse.quote(url, safe=":/") + ("" if kernels else "&kernel=0"))
    want = "wasm-simd128" if kernels else "numpy"
    if ready["phases_ms"].get("projections") != want:
        raise RuntimeError(f"{url}: the page's projections ran on {ready['phases_ms'].get('projections')}, not {want}: "
                           f"{ready['phases_ms'].get('projections_note')}")
    figures = ours_figures(tab.generate(PROMPT, n_tokens), ready)
    figures["renderer_peak_mb"] = memory.peak_mb()
    context.close()
    return figures


def run(n_tokens, log, type_names=tuple(TYPES)):
    """({type: {column: figures}}, {type: file bytes}) for the 130m-shaped .gguf files."""
    from playwright.sync_api import sync_playwright

    import build
    import provision

    log("the 130m-shaped .gguf files (converted once into .cache/bench/)")
    ggufs = ensure_gguf_files(type_names)
    banned = banned_ids(ggufs[type_names[-1]])
    log(f"wllama: {len(banned)} token ids banned (not UTF-8 alone: bench/peer_vocab.py)")
    log("building dist/")
    build.build(quiet=True)
    site = browser.BenchSite(build, {"gguf": {p.name: p for p in ggufs.values()}})  # served at models/gguf/
    peer_site = PeerSite({p.name: p for p in ggufs.values()})
    results = {}
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=provision.find_chromium(), args=provision.CHROMIUM_FLAGS)
            for type_name, path in ggufs.items():
                results[type_name] = {}
                for n_threads in THREADS:
                    log(f"wllama, {path.name}: load, {n_tokens} tokens at {n_threads} thread(s)")
                    results[type_name][f"wllama_{n_threads}"] = run_wllama(chromium, peer_site, path.name, n_threads,
                                                                           n_tokens, banned)
                for column, kernels in (("ours", True), ("ours_numpy", False)):
                    log(f"our page{'' if kernels else ' ?kernel=0'}, {path.name}: cold load (Python starts), {n_tokens} tokens")
                    results[type_name][column] = run_ours(chromium, site, f"{site.url}models/gguf/{path.name}", n_tokens,
                                                          kernels)
            chromium.close()
    finally:
        site.close()
        peer_site.close()
    return results, {t: p.stat().st_size for t, p in ggufs.items()}


def main():
    """python -m bench.peer [--tokens 128]: this part of the benchmark alone (prints, writes nothing)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=main.__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--types", nargs="+", choices=list(TYPES), default=list(TYPES))
    args = parser.parse_args()
    started = time.monotonic()
    results, sizes = run(args.tokens, lambda m: print(f"[peer {time.monotonic() - started:5.0f} s] {m}", flush=True),
                         tuple(args.types))
    print(json.dumps(results))
    print(table(results, sizes))


if __name__ == "__main__":
    main()
