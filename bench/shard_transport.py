"""Prototype: decode speed in headless Chromium with the model split over 2 Pyodide workers, each
running one shard of mamba_wasm/sharded.py, summing over a MessageChannel or a SharedArrayBuffer
(+ Atomics), against 1 worker. Prints a table; a prototype for the page's workers, not the page.

    python -m bench.shard_transport [MODEL_DIR] [--tokens N] [--rounds R]

A local server (in this script) serves Pyodide, its NumPy wheel, mamba_wasm as a zip, the model and
bench/shard_transport/ with COOP/COEP headers, so the page is cross-origin isolated and may use
SharedArrayBuffer. Variants, each in a fresh page with fresh workers, rounds interleaved:
    whole      1 worker, Mamba.step (today's page)
    K=1        1 worker, the shard step driven from JavaScript one partial sum at a time
    channel    2 workers, the sums over MessageChannels (works on any static host)
    sab        2 workers, the sums through a SharedArrayBuffer with Atomics.wait (isolated pages only)
Decode tok/s is 1000 / the median ms per token after WARMUP tokens. Every variant must produce the
same greedy ids: the table says so.
"""

import argparse
import io
import statistics
import sys
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import build  # build.py at the repository root: `python -m bench.shard_transport` runs from there

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench" / "shard_transport"
DEFAULT_MODEL = ROOT / ".cache" / "bench" / "mamba-130m-shaped"
WARMUP = 5
VARIANTS = {  # name -> page query
    "1 worker, Mamba.step": "workers=1&transport=none&whole=1",
    "1 worker, shard step driven from JS (K=1)": "workers=1&transport=none&whole=0",
    "2 workers, MessageChannel": "workers=2&transport=channel&whole=0",
    "2 workers, SharedArrayBuffer + Atomics": "workers=2&transport=sab&whole=0",
    "2 workers, SharedArrayBuffer + Atomics, no spinning": "workers=2&transport=sab&whole=0&spins=0",
}
TYPES = {".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".py": "text/plain", ".zip": "application/zip"}


def routes(model_dir):
    """URL path -> bytes, or a file to stream."""
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        for path in sorted((ROOT / "mamba_wasm").glob("*.py")):
            archive.write(path, f"mamba_wasm/{path.name}")
    numpy_wheel = next((ROOT / ".cache" / "wheels").glob("numpy-*.whl"), None)
    if numpy_wheel is None:
        sys.exit("no NumPy wheel in .cache/wheels: run `python3 build.py` first")
    table = {"/mamba_wasm.zip": package.getvalue(), f"/{numpy_wheel.name}": numpy_wheel}
    for name in ("page.html", "page.js", "worker.js", "glue.py"):
        table[f"/{name}"] = HERE / name
    for path in (ROOT / "node_modules" / "pyodide").iterdir():
        table[f"/pyodide/{path.name}"] = path
    for name in ("config.json", "model.safetensors"):
        table[f"/model/{name}"] = Path(model_dir) / name
    return table


class Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args, table, **kwargs):
        self.table = table
        super().__init__(*args, **kwargs)

    def do_GET(self):
        item = self.table.get(self.path.split("?")[0])
        if item is None:
            self.send_error(404)
            return
        data = item if isinstance(item, bytes) else item.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", TYPES.get(Path(self.path.split("?")[0]).suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")  # these two make the page
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")  # cross-origin isolated
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def run_variant(browser, base, query, tokens):
    page = browser.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        wheel = next((ROOT / ".cache" / "wheels").glob("numpy-*.whl")).name
        page.goto(f"{base}/page.html?{query}&tokens={tokens}&numpy={wheel}")
        page.wait_for_function("window.benchResult !== undefined", timeout=600_000, polling=500)
        result = page.evaluate("window.benchResult")
    finally:
        page.close()
    if "error" in result:
        raise RuntimeError(f"{query}: {result['error']} {errors}")
    return result


def main(argv=None):
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", type=int, help="variant numbers (1-based) to run; the first given is the baseline")
    args = parser.parse_args(argv)
    variants = {name: query for i, (name, query) in enumerate(VARIANTS.items(), 1) if not args.only or i in args.only}
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, table=routes(args.model_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    runs = {name: [] for name in variants}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=build.find_chromium(), args=build.CHROMIUM_FLAGS)
        try:
            for round_ in range(args.rounds):
                for name, query in variants.items():
                    run = run_variant(browser, base, query, args.tokens)
                    runs[name].append(run)
                    ms = statistics.median(run["results"][0]["times"][WARMUP:])
                    print(f"round {round_ + 1}: {name}: {1000 / ms:.1f} tok/s, ready in {run['readyMs'] / 1000:.1f} s",
                          file=sys.stderr, flush=True)
        finally:
            browser.close()
            server.shutdown()
    print_table(runs, args)


def print_table(runs, args):
    reference = next(iter(runs.values()))[0]["results"][0]["ids"]
    isolated = all(run["crossOriginIsolated"] for results in runs.values() for run in results)
    print(f"{Path(args.model_dir).name}, headless Chromium, Pyodide 0.27.7; cross-origin isolated: {isolated}; "
          f"{args.tokens} greedy tokens per run (first {WARMUP} not timed), {args.rounds} rounds")
    base_ms = None
    print("| variant | decode tok/s per round | median ms/token | vs the first | time to ready s | weights MB per worker | "
          "WASM heap MB per worker | waiting for sums, % of decode | same ids |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for name, results in runs.items():
        per_round = [statistics.median(run["results"][0]["times"][WARMUP:]) for run in results]
        ms = statistics.median(per_round)
        base_ms = base_ms or ms
        same = all(worker["ids"] == reference for run in results for worker in run["results"])
        ready = statistics.median(run["readyMs"] for run in results) / 1000
        weights = max(r["weightsMb"] for r in results[0]["readies"])
        heap = max(r["heapMb"] for r in results[0]["readies"])
        rates = ", ".join(f"{1000 / m:.1f}" for m in per_round)
        waited = statistics.median(
            100 * worker.get("waitedMs", 0) / sum(worker["times"]) for run in results for worker in run["results"]
        )
        print(f"| {name} | {rates} | {ms:.1f} | {base_ms / ms:.2f}x | {ready:.1f} | {weights:.0f} | {heap:.0f} | "
              f"{waited:.0f} | {same} |")


if __name__ == "__main__":
    main()
