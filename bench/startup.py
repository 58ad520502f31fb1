"""Time to ready of the real page in headless Chromium, by start, beside Pyodide's bare start, in one
run on the same dist/ files:

- bare: Pyodide's own `loadPyodide()` + `loadPackage("numpy")` + `import numpy` in a module worker
  (warm: the second of two starts, its wasm compiled code cached by Chromium), the yardstick of
  issue 13; "bare, first start": the first of those two (empty caches, as on a first visit),
- cold: a first visit (empty Cache API; the page downloads, restores Python from the site's own
  snapshot made at build time, saves it, loads the demo model),
- cold, normal start: a first visit with the site's snapshot answering 404 (the page starts Python
  normally, imports NumPy and the package, saves the snapshot: the first visit before the site had
  one),
- warm, snapshot: a repeat visit (files from the Cache API, Python from the saved snapshot),
- warm, normal: a repeat visit with the saved snapshot deleted and the site's still answering 404
  (files from the Cache API).

Two clocks: "time to ready" is the bare start as its worker times it (the start alone) against the
page from Playwright's goto() to ready; "in the browser" is the bare start from the page's `new
Worker` to its answer against the page from its navigation's start to the ready message (both
without Playwright's round trips; the page's also has loading the page and its scripts).

    python -m bench.startup [--runs N]

Medians of N runs, interleaved (bare, cold, cold normal, warm snapshot, warm normal; again): each
cold run in a new browser context, the warm ones reload the same tab.
"""

import argparse
import json
import statistics

import build
import provision

from . import browser
from .models import ROOT, default_model_dir


def run(n_runs):
    from playwright.sync_api import sync_playwright

    build.build(quiet=True)
    site = browser.BenchSite(build, {})
    model = default_model_dir().name
    results = {"bare": [], "bare, first start": [], "cold": [], "cold, normal start": [], "warm, snapshot": [],
               "warm, normal": []}
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=provision.find_chromium(), args=provision.CHROMIUM_FLAGS)
            for _ in range(n_runs):  # interleaved, so that a change of the machine's load hits every row alike
                bare = browser.bare_start(chromium, site.url)
                results["bare, first start"].append(bare.pop("first"))
                results["bare"].append(bare)
                context = chromium.new_context()  # a first visit: empty HTTP cache and Cache API
                results["cold"].append(browser.Tab(context, site.url).open(model))
                context.close()
                context = chromium.new_context()
                tab = browser.Tab(context, site.url)
                tab.block_built_snapshot()
                results["cold, normal start"].append(tab.open(model))
                tab.wait_for_snapshot()
                results["warm, snapshot"].append(tab.open(model))
                tab.forget_snapshot()
                results["warm, normal"].append(tab.open(model))
                context.close()
            chromium.close()
    finally:
        site.close()
    return results


def table(results):
    bare = statistics.median(r["wall_s"] for r in results["bare"])
    bare_page = statistics.median(r["page_s"] for r in results["bare"])
    rows = ["| start | time to ready (s) | / bare start | in the browser (s) | / bare start | start taken "
            "| worker phases (median s) |",
            "|---|---:|---:|---:|---:|---|---|"]
    for name, runs in results.items():
        wall = statistics.median(r["wall_s"] for r in runs)
        page = statistics.median(r["page_s"] for r in runs)
        phases = {}
        for r in runs:
            for key, value in r["phases_ms"].items():
                if isinstance(value, (int, float)):
                    phases.setdefault(key, []).append(value)
        text = ", ".join(f"{k.removesuffix('_ms')} {statistics.median(v) / 1000:.2f}" for k, v in phases.items())
        taken = ", ".join(sorted({r.get("start") or "—" for r in runs}))
        rows.append(f"| {name} | {wall:.2f} | {wall / bare:.2f}x | {page:.2f} | {page / bare_page:.2f}x | {taken} "
                    f"| {text} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--runs", type=int, default=3, help="runs of each start (medians)")
    args = parser.parse_args(argv)
    results = run(args.runs)
    print(table(results))
    out = ROOT / ".cache" / "bench" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
