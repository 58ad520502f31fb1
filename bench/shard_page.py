"""One model split across K workers in the real page (web/shard-pool.js): 1 worker against 2, in
headless Chromium, side by side in one run, on a cross-origin isolated site (the workers sum
through shared memory) and on a plain one (the workers sum over MessageChannels, blocking on them
through JSPI: web/port-transport.js); optionally 3, 4... workers on the isolated site.

    python3 build.py bench ...            a table "split across workers" after the main one
    python -m bench.shard_page [MODEL_NAME] [--tokens N] [--prompt N] [--more 3 4]

Each variant in a fresh browser profile: time to ready (cold), prefill of one prompt, decode
tok/s (median of windows), and each worker's WASM heap. The machine is shared: read the ratios
between rows of one run, not the rates.
"""

import argparse
import json
import time
from pathlib import Path

import build
import provision

from .browser import READY_TIMEOUT_S, BenchSite, decode_figures, prompt_of
from .models import default_model_dir, ensure_130m_shaped

# (label, workers asked for, isolated site)
VARIANTS = (("1 worker, isolated", 1, True), ("2 workers, shared memory (isolated)", 2, True),
            ("2 workers, MessageChannel (not isolated)", 2, False))


def variants(more=()):
    """VARIANTS, then K workers through shared memory for each K in `more`."""
    return (*VARIANTS, *((f"{k} workers, shared memory (isolated)", k, True) for k in more))
RECORD_LEADER = """
(() => {
  const RealWorker = window.Worker;
  window.__bench = { messages: [], worker: null };
  window.Worker = function (url, options) {
    const worker = new RealWorker(url, options);
    if (window.__bench.worker === null) {  // the page's first worker is the leader
      window.__bench.worker = worker;
      worker.addEventListener("message", (event) => {  // shard-load's buffers do not cross to Python
        if (event.data.type !== "shard-load") window.__bench.messages.push({ at: performance.now(), ...event.data });
      });
    }
    return worker;
  };
})();
"""


def open_leader(browser, url, label, timeout_s=READY_TIMEOUT_S):
    """(context, page, seconds to ready) of the site at `url` in a new context, the leader worker's
    messages recorded; RuntimeError naming `label` when the page ends in an error."""
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(RECORD_LEADER)
    began = time.monotonic()
    page.goto(url)
    page.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=timeout_s * 1000)
    if page.get_attribute("body", "data-state") != "ready":
        raise RuntimeError(f"{label}: {page.text_content('[data-testid=error]')}")
    return context, page, time.monotonic() - began


def measure(browser, url, name, workers, tokenizer, n_tokens, prompt_tokens):
    context, page, ready_s = open_leader(browser, f"{url}?model={name}&workers={workers}", f"{name}, {workers} workers")
    ran = int(page.get_attribute("body", "data-workers"))

    def generate(request_id, prompt, max_new_tokens):
        params = {"max_new_tokens": max_new_tokens, "temperature": 0.8, "top_k": 0, "top_p": 1.0,
                  "repetition_penalty": 1.0, "seed": 0, "stop_at_eos": False}
        page.evaluate("([id, prompt, params]) => window.__bench.worker.postMessage({type: 'generate', id, prompt, params})",
                      [request_id, prompt, params])
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:  # polled: the page's CSP refuses wait_for_function's evaluated strings
            messages = [m for m in page.evaluate("window.__bench.messages") if m.get("id") == request_id]
            if messages and messages[-1]["type"] in ("done", "error") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not messages or messages[-1]["type"] != "done":
            raise RuntimeError(messages[-1].get("message", "no answer") if messages else "no answer")
        return messages

    started = next(m for m in generate(20_001, prompt_of(tokenizer, prompt_tokens), 1) if m["type"] == "started")
    decode = decode_figures(generate(20_002, "The ", n_tokens))
    heaps = json.loads(page.get_attribute("body", "data-shard-heaps") or "{}")
    context.close()
    return {"workers": ran, "ready_s": ready_s, "prefill_tok_s": started["n_prompt"] / (started["prefill_ms"] / 1000),
            "n_prompt": started["n_prompt"], "decode_tok_s": decode["decode_tok_s"],
            "heap_mb": [decode["peak_wasm_heap_mb"], *(heaps[k] / 2**20 for k in sorted(heaps))]}


def run(name, folder, n_tokens, prompt_tokens, log, more=()):
    """{variant label: figures}, each variant in a fresh browser profile."""
    from playwright.sync_api import sync_playwright

    import mamba_wasm

    build.build(quiet=True)
    tokenizer = mamba_wasm.Tokenizer.from_file(Path(folder) / "tokenizer.json")
    default = default_model_dir().name
    extra = {} if name == default else {name: folder}
    sites = {isolated: BenchSite(build, extra, isolated=isolated) for isolated in (True, False)}
    results = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=provision.find_chromium(), args=provision.CHROMIUM_FLAGS)
            for label, workers, isolated in variants(more):
                log(f"browser, {name}, {label}: ready, a {prompt_tokens}-token prompt, {n_tokens} tokens")
                results[label] = measure(browser, sites[isolated].url, name, workers, tokenizer, n_tokens, prompt_tokens)
            browser.close()
    finally:
        for site in sites.values():
            site.close()
    return results


def table(results, name):
    base = results.get("1 worker, isolated")
    rows = [f"Split across workers ({name}, the real page in headless Chromium; ratios to 1 worker of the same run):", "",
            "| variant | workers run | decode tok/s | vs 1 | prefill tok/s (prompt tokens) | vs 1 | time to ready (s) | vs 1 | WASM heap per worker (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, r in results.items():
        def ratio(key):
            return f"{r[key] / base[key]:.2f}x" if base else ""
        rows.append(f"| {label} | {r['workers']} | {r['decode_tok_s']:.2f} | {ratio('decode_tok_s')} | "
                    f"{r['prefill_tok_s']:.1f} ({r['n_prompt']}) | {ratio('prefill_tok_s')} | {r['ready_s']:.1f} | "
                    f"{ratio('ready_s')} | {' / '.join(f'{mb:.0f}' for mb in r['heap_mb'])} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.shard_page")
    parser.add_argument("model", nargs="?", default="mamba-130m-shaped",
                        help="mamba-130m-shaped (default) or the site's default model")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens for the prefill figure")
    parser.add_argument("--folder", type=Path, help="the checkpoint's folder (default: bench/models.py's)")
    parser.add_argument("--more", type=int, nargs="*", default=[], metavar="K",
                        help="also K workers through shared memory (e.g. 3 4: on 2 cores they oversubscribe)")
    args = parser.parse_args(argv)
    folder = args.folder or (ensure_130m_shaped() if args.model == "mamba-130m-shaped" else default_model_dir())
    results = run(args.model, folder, args.tokens, args.prompt, lambda m: print(f"[shard_page] {m}", flush=True),
                  args.more)
    print(table(results, args.model))


if __name__ == "__main__":
    main()
