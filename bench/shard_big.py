"""A model over one worker's heap limit, loaded and decoded in the real page split across K workers
(issue 14): the mamba-790m-shaped random checkpoint (3.2 GB of float32 weights; one worker holds at
most 2 GB) as a model from a URL ("Bring your own model") on a cross-origin isolated site.

    python -m bench.shard_big [--workers K] [--tokens N] [--window N]
    python3 build.py bench --big ...       the same, as a section of the benchmark run (long)

It asks for 1 worker first (the page must refuse the model before downloading anything, naming the
workers it needs), then loads it on K workers in a fresh browser profile and decodes N tokens after a
short prompt: tok/s per window of tokens (flat, or not), each worker's WASM heap, time to ready,
and the browser's peak memory (the proportional set size, PSS, of every Chromium process, sampled
each second: shared pages counted once).
"""

import argparse
import json
import os
import threading
import time
import urllib.parse
from pathlib import Path

import build
import provision

from .browser import READY_TIMEOUT_S, BenchSite, decode_figures
from .models import ensure_790m_shaped
from .shard_page import open_leader

NAME = "mamba-790m-shaped"
LOAD_TIMEOUT_S = 1800  # 3.2 GB through one worker's download, the cut and two heaps
TOKEN_TIMEOUT_S = 10  # per token decoded: a 2-core machine shared with other jobs can be that slow


def _descendants(root):
    """Process ids under `root` (this benchmark: Playwright's driver, then Chromium's processes)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _browser_pss_bytes():
    """The summed PSS of this process's Chromium descendants (not Playwright's Node driver)."""
    total = 0
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if "chrom" not in f.read():
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


class PeakMemory:
    """The browser's PSS, sampled each second on a thread: the peak, and the series."""

    def __init__(self):
        self.series = []  # (seconds since start, bytes)
        self.began = time.monotonic()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.running:
            self.series.append((time.monotonic() - self.began, _browser_pss_bytes()))
            time.sleep(1)

    def stop(self):
        self.running = False
        self.thread.join()
        return max((b for _, b in self.series), default=0)


def refusal_on_one_worker(browser, site_url, model_url):
    """The page's error when the model is asked for on 1 worker (nothing may be downloaded)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site_url}?workers=1&model={urllib.parse.quote(model_url, safe=':/')}")
    page.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=READY_TIMEOUT_S * 1000)
    text = page.text_content("[data-testid=error]") or ""
    context.close()
    return text


def decode_on_workers(browser, site_url, model_url, workers, n_tokens, log, minutes=None):
    """{ready_s, workers, heap_mb, decode figures, peak_pss_bytes, pss series} of one load + decode."""
    memory = PeakMemory()
    try:
        context, page, ready_s = open_leader(
            browser, f"{site_url}?workers={workers}&model={urllib.parse.quote(model_url, safe=':/')}",
            f"{NAME}, {workers} workers", LOAD_TIMEOUT_S)
    except Exception:
        memory.stop()
        raise
    load_peak = max((b for _, b in memory.series), default=0)
    log(f"ready after {ready_s:.0f} s, browser PSS peak so far {load_peak / 2**30:.1f} GiB; decoding {n_tokens} tokens")
    params = {"max_new_tokens": n_tokens, "temperature": 0.8, "top_k": 0, "top_p": 1.0,
              "repetition_penalty": 1.0, "seed": 0, "stop_at_eos": False}
    page.evaluate("([params]) => window.__bench.worker.postMessage({type: 'generate', id: 30001, prompt: 'The ', params})",
                  [params])
    decoding = time.monotonic()
    deadline = decoding + TOKEN_TIMEOUT_S * n_tokens
    stop_at = time.monotonic() + 60 * minutes if minutes else deadline
    logged = 0
    while True:  # polled: the page's CSP refuses wait_for_function's evaluated strings
        time.sleep(2)
        last = page.evaluate("(() => { const m = window.__bench.messages.filter((m) => m.id === 30001); "
                             "return m.length ? [m[m.length - 1].type, m[m.length - 1].n_generated || 0] : null; })()")
        if last and last[0] in ("done", "error") or time.monotonic() > deadline:
            break
        if time.monotonic() > stop_at:  # the wall-clock budget: Stop, and report the tokens so far
            page.evaluate("() => window.__bench.worker.postMessage({type: 'stop', id: 30001})")
            stop_at = deadline
        if last and last[1] >= logged + 100:
            logged = last[1]
            log(f"{logged} tokens after {time.monotonic() - decoding:.0f} s of decoding")
    messages = [m for m in page.evaluate("window.__bench.messages") if m.get("id") == 30001]
    if not messages or messages[-1]["type"] != "done":
        memory.stop()
        reason = messages[-1].get("message", f"not done after {messages[-1].get('n_generated')} tokens") \
            if messages else "no answer"
        raise RuntimeError(f"{NAME}, {workers} workers: {reason}")
    heaps = json.loads(page.get_attribute("body", "data-shard-heaps") or "{}")
    ran = int(page.get_attribute("body", "data-workers"))
    figures = decode_figures(messages)
    context.close()
    peak = memory.stop()
    return {"workers": ran,
            "ready_s": ready_s, "load_peak_pss_bytes": load_peak, "peak_pss_bytes": peak,
            "heap_mb": [figures["peak_wasm_heap_mb"], *(heaps[k] / 2**20 for k in sorted(heaps))],
            "decode_tok_s": figures["decode_tok_s"], "ms_per_token_series": figures["ms_per_token_series"],
            "n_generated": messages[-1].get("n_generated"), "n_asked": n_tokens, "pss_series": memory.series}


def run(workers, n_tokens, log, minutes=None):
    from playwright.sync_api import sync_playwright

    folder = ensure_790m_shaped()
    build.build(quiet=True)
    log(f"serving {folder} (its sha256 first)")
    site = BenchSite(build, {NAME: folder}, isolated=True)
    model_url = f"{site.url}models/{NAME}/"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=provision.find_chromium(), args=provision.CHROMIUM_FLAGS)
            refusal = refusal_on_one_worker(browser, site.url, model_url)
            log(f"1 worker: {refusal[:160]}")
            log(f"{workers} workers: loading")
            result = decode_on_workers(browser, site.url, model_url, workers, n_tokens, log, minutes)
            browser.close()
    finally:
        site.close()
    return {"refusal": refusal, **result, "file_bytes": (folder / "model.safetensors").stat().st_size}


def windows(series, window):
    """[(first token, last token, tok/s)] over `window`-token spans, from 50-token measurements."""
    out = []
    for i in range(0, len(series), max(1, window // 50)):
        chunk = series[i:i + max(1, window // 50)]
        out.append((chunk[0][0], chunk[-1][0] + 50, 1000 / (sum(ms for _, ms in chunk) / len(chunk))))
    return out


def table(result, window):
    heap = " / ".join(f"{mb:.0f}" for mb in result["heap_mb"])
    rows = [f"A model over one heap's limit ({NAME}, {result['file_bytes'] / 1e9:.2f} GB file, float32) on "
            f"{result['workers']} workers, the real page in headless Chromium, a model from a URL on an isolated site:", "",
            "| workers | time to ready (s) | decode tok/s (median) | WASM heap per worker (MB) | browser peak PSS while loading (GiB) | peak over the run (GiB) |",
            "|---:|---:|---:|---|---:|---:|",
            f"| {result['workers']} | {result['ready_s']:.0f} | {result['decode_tok_s']:.2f} | {heap} | "
            f"{result['load_peak_pss_bytes'] / 2**30:.1f} | {result['peak_pss_bytes'] / 2**30:.1f} |", "",
            f"Decode tok/s per {window}-token window ({result['n_generated']} of {result['n_asked']} tokens asked for, "
            "after a 2-token prompt):", "",
            "| tokens | " + " | ".join(f"{a}-{b}" for a, b, _ in windows(result["ms_per_token_series"], window)) + " |",
            "|---|" + "---:|" * len(windows(result["ms_per_token_series"], window)),
            "| tok/s | " + " | ".join(f"{r:.2f}" for _, _, r in windows(result["ms_per_token_series"], window)) + " |",
            "", f"On 1 worker the page refused it: {result['refusal']}"]
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.shard_big")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--window", type=int, default=100, help="tokens per tok/s window in the table")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--minutes", type=float, help="stop the decode after this long (a loaded machine) and "
                        "report the tokens it made")
    args = parser.parse_args(argv)
    result = run(args.workers, args.tokens, lambda m: print(f"[shard_big] {m}", flush=True), args.minutes)
    if args.json:
        args.json.write_text(json.dumps(result))
    print(table(result, args.window))


if __name__ == "__main__":
    main()
