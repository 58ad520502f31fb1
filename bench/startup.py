"""Time to a started Python (NumPy and mamba_wasm imported) in headless Chromium, side by side in one
run, each start in a fresh module worker on the same dist/ files:

- bare: Pyodide's own `loadPyodide()` + `loadPackage("numpy")` + `import numpy` (the yardstick),
- normal: web/snapshot-start.js without a snapshot (wheels unpacked, `import numpy, mamba_wasm`),
- first visit: the same, making and storing the snapshot,
- snapshot: web/snapshot-start.js restoring that snapshot.

    python -m bench.startup [--runs N]

The worker is the one the end-to-end tests drive (tests/e2e/snapshot_page/), mounted in front of
dist/. Medians of N warm runs (the browser's HTTP cache holds the files) after one cold run each.
"""

import argparse
import json
import statistics
import threading
from pathlib import Path

import build

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "tests" / "e2e" / "snapshot_page"
PREFIX = "startup"


def serve():
    class Handler(build.StaticHandler):
        quiet = True

        def translate_path(self, path):
            parts = path.split("?", 1)[0].strip("/").split("/")
            if parts[0] == PREFIX:
                page_file = PAGE.joinpath(*parts[1:])
                return str(page_file if page_file.is_file() else build.DIST.joinpath(*parts[1:]))
            return super().translate_path(path)

    httpd = build.make_server(build.DIST, port=0, handler=Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/{PREFIX}/"


def start(page, **request):
    result = page.evaluate("(request) => window.runStart(request)", {"generate": False, **request})
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def run(n_runs):
    from playwright.sync_api import sync_playwright

    build.build(quiet=True)
    httpd, url = serve()
    series = {"bare": [], "normal": [], "snapshot": []}
    cold = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=build.find_chromium(), args=build.CHROMIUM_FLAGS)
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(600_000)
            page.goto(url + "index.html")
            cold["bare"] = start(page, bare=True)
            cold["first visit"] = start(page)  # normal start, makes and stores the snapshot
            for _ in range(n_runs):
                series["bare"].append(start(page, bare=True))
                series["normal"].append(start(page, noSnapshot=True))
                series["snapshot"].append(start(page))
            context.close()
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    return cold, series


def median_ms(results, key=None):
    return statistics.median(r["readyMs"] if key is None else r["timings"].get(key, 0) for r in results)


def table(cold, series):
    bare = median_ms(series["bare"])
    rows = ["| start | time to Python ready (s) | / bare | phases (median ms) |", "|---|---:|---:|---|"]
    for name, results in [("bare (cold HTTP cache)", [cold["bare"]]), ("first visit: normal + make snapshot", [cold["first visit"]]),
                          *series.items()]:
        keys = sorted({k for r in results for k in r["timings"]})
        phases = ", ".join(f"{k.removesuffix('_ms')} {median_ms(results, k):.0f}" for k in keys)
        ms = median_ms(results)
        rows.append(f"| {name} | {ms / 1000:.2f} | {ms / bare:.2f}x | {phases} |")
    starts = {r["start"] for r in series["snapshot"]}
    if starts != {"snapshot"}:
        rows.append(f"\nwarning: the snapshot runs took {starts} starts: {[r['note'] for r in series['snapshot']]}")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--runs", type=int, default=3, help="warm runs of each start (medians)")
    args = parser.parse_args(argv)
    cold, series = run(args.runs)
    print(table(cold, series))
    out = ROOT / ".cache" / "bench" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cold": cold, "series": series}))


if __name__ == "__main__":
    main()
