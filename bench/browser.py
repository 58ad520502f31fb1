"""mamba_wasm in headless Chromium, through the real page and worker (dist/ as built).

The static server adds the benchmark's checkpoints to the site as if they were listed in
models/index.json and manifest.json, so the worker fetches, verifies and caches them exactly as
it does the default model. A script injected before the page runs records every message the
worker sends (with its arrival time) and lets the benchmark send requests on the page's worker.
"""

import hashlib
import json
import statistics
import threading
import time
from pathlib import Path

import build  # build.py and provision.py at the repository root: `python -m bench` runs from there
import provision

from .native import PROBE_TOKENS, PROMPT_LENGTHS, WARMUP

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 600
# The worker the snapshot tests drive; here it runs Pyodide's own bare start, the yardstick.
STARTUP_PAGE = ROOT / "tests" / "e2e" / "snapshot_page"
STARTUP_PREFIX = "startup"
BUILT_SNAPSHOT = "**/py/built-snapshot.bin.gz"
SNAPSHOT_KEYS = """caches.open('mamba-wasm-v1').then((c) => c.keys())
    .then((keys) => keys.filter((r) => r.url.includes('python-snapshot')))"""

RECORD_WORKER = """
(() => {
  const RealWorker = window.Worker;
  window.__bench = { messages: [], worker: null };
  window.Worker = function (url, options) {
    const worker = new RealWorker(url, options);
    window.__bench.worker = worker;
    worker.addEventListener("message", (event) => {
      window.__bench.messages.push({ at: performance.now(), ...event.data });
    });
    return worker;
  };
})();
"""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _site_files(source):
    """{file name: path} of a checkpoint folder or of a {file name: path} given as it is."""
    if isinstance(source, dict):
        return {file: Path(path) for file, path in source.items()}
    return {file: Path(source) / file for file in ("config.json", "model.safetensors", "tokenizer.json")}


class BenchSite:
    """dist/ served on 127.0.0.1, with extra checkpoints mounted under models/NAME/: each a folder
    (its config.json, model.safetensors, tokenizer.json) or {file name: path} (a .gguf beside a
    tokenizer.json, as bench/peer.py mounts them)."""

    def __init__(self, build, extra_models, isolated=False):
        self.build = build
        self.extra = {name: _site_files(source) for name, source in extra_models.items()}
        self.entries = [{"name": name, "path": name, "description": "benchmark checkpoint", "files": list(files)}
                        for name, files in self.extra.items()]
        self.hashes = {f"models/{name}/{file}": {"sha256": _sha256(path), "size": path.stat().st_size}
                       for name, files in self.extra.items() for file, path in files.items()}
        site = self

        class Handler(build.StaticHandler):
            quiet = True

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/models/index.json":
                    return self._json(site._index())
                if path == "/manifest.json":
                    return self._json(site._manifest())
                return super().do_GET()

            def translate_path(self, path):
                parts = path.split("?", 1)[0].strip("/").split("/")
                if parts[0] == STARTUP_PREFIX:  # the start-up test page, in front of dist/
                    page_file = STARTUP_PAGE.joinpath(*parts[1:])
                    return str(page_file if page_file.is_file() else build.DIST.joinpath(*parts[1:]))
                if len(parts) == 3 and parts[0] == "models" and parts[2] in site.extra.get(parts[1], {}):
                    return str(site.extra[parts[1]][parts[2]])
                return super().translate_path(path)

            def _json(self, value):
                body = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = build.make_server(build.DIST, port=0, handler=Handler, isolated=isolated)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def _index(self):
        index = json.loads((self.build.DIST / "models" / "index.json").read_text())
        index["models"] = index["models"] + self.entries
        return index

    def _manifest(self):
        manifest = json.loads((self.build.DIST / "manifest.json").read_text())
        manifest["files"].update(self.hashes)
        return manifest

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def start_taken(timings):
    """Which start the worker took: "normal", "snapshot (saved)" or "snapshot (built)"."""
    start = timings.get("start")
    return f"{start} ({timings['snapshot']})" if timings.get("snapshot") else start


class Tab:
    """One page of the site with the worker's messages recorded."""

    def __init__(self, context, url):
        self.page = context.new_page()
        self.page.add_init_script(RECORD_WORKER)
        self.url = url
        self.next_id = 10_000  # far from the page's own request ids

    def open(self, model):
        began = time.monotonic()
        self.page.goto(f"{self.url}?model={model}")
        self.page.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=READY_TIMEOUT_S * 1000)
        if self.page.get_attribute("body", "data-state") != "ready":
            raise RuntimeError(f"{model}: the page did not reach ready: {self.page.text_content('[data-testid=error]')}")
        ready = self.wait_for("ready")
        # page_s: from the navigation's start to the ready message, on the page's own clock
        return {"wall_s": time.monotonic() - began, "page_s": ready["at"] / 1000, "worker_ms": ready["elapsed_ms"],
                "phases_ms": ready["timings"], "start": start_taken(ready["timings"])}

    def wait_for_snapshot(self):
        """The first visit stores Python's snapshot in the background: wait until it is there."""
        # Polled here: wait_for_function takes the promise itself for a true value.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.page.evaluate(f"{SNAPSHOT_KEYS}.then((keys) => keys.length > 0)"):
            if time.monotonic() > deadline:
                raise TimeoutError("the snapshot was not saved")
            time.sleep(0.1)

    def block_built_snapshot(self):
        """The site's own snapshot (made at build time) answers 404 in this tab's context: Python
        starts normally unless a snapshot was saved (the start before that snapshot existed)."""
        self.page.context.route(BUILT_SNAPSHOT, lambda route: route.fulfill(status=404, body="blocked"))

    def forget_snapshot(self):
        self.page.evaluate(SNAPSHOT_KEYS + ".then(async (keys) => { const c = await caches.open('mamba-wasm-v1');"
                           " for (const k of keys) await c.delete(k); })")

    def messages(self, request_id=None):
        return [m for m in self.page.evaluate("window.__bench.messages")
                if request_id is None or m.get("id") == request_id]

    def wait_for(self, kind, request_id=None, timeout_s=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [m for m in self.messages(request_id) if m["type"] in (kind, "error")]
            if found:
                if found[-1]["type"] == "error":
                    raise RuntimeError(found[-1]["message"])
                return found[-1]
            time.sleep(0.2)
        raise TimeoutError(f"no {kind!r} message within {timeout_s} s")

    def generate(self, prompt, max_new_tokens, inspect=False, **params):
        """Send a generate request on the page's worker; the messages it produced. inspect: with
        each token's probabilities (the token view's records; the page shows them when it is on)."""
        self.next_id += 1
        request_id = self.next_id
        params = {"max_new_tokens": max_new_tokens, "temperature": 0, "top_k": 0, "top_p": 1.0,
                  "repetition_penalty": 1.0, "seed": 0, "stop_at_eos": False, **params}  # web/protocol.js
        self.page.evaluate("([id, prompt, params, inspect]) => window.__bench.worker.postMessage("
                           "{type: 'generate', id, prompt, params, ...(inspect ? {inspect} : {})})",
                           [request_id, prompt, params, inspect])
        self.wait_for("done", request_id)
        return self.messages(request_id)


def prompt_of(tokenizer, n_tokens):
    """Text that encodes to about n_tokens tokens: ordinary prose, repeated."""
    prose = (ROOT / "README.md").read_text(encoding="utf-8")
    ids = tokenizer.encode(prose * (1 + n_tokens // max(1, len(tokenizer.encode(prose)))))[:n_tokens]
    return tokenizer.decode(ids)


VIEWS_SHOWN_TOKENS = 1000  # decode with the token view on: its cost per token shows well before this
SPAN = 50  # tokens per measurement window: single messages arrive with the page's event-loop jitter


def probes(windows):
    """ms per token in the window holding each probe token; windows are (first token, ms)."""
    return {str(p): ms for p in PROBE_TOKENS for first, ms in windows if first < p <= first + SPAN}


def decode_figures(messages):
    """Time per token from the stream of token messages, each carrying n_generated and its arrival."""
    points = [(m.get("n_generated", 0), m["at"]) for m in messages if m["type"] in ("started", "token", "done")]

    def ms_per_token(first, last):
        """Over the messages from the one at or before token `first` to the one at or after `last`."""
        start = max((p for p in points if p[0] <= first), default=points[0])
        end = min((p for p in points if p[0] >= last), default=points[-1])
        return (end[1] - start[1]) / max(1, end[0] - start[0])

    n_total = points[-1][0]
    windows = [(n, ms_per_token(n, n + SPAN)) for n in range(WARMUP, n_total - SPAN + 1, SPAN)]
    heap = [(m["n_generated"], m["wasm_heap_bytes"] / 2**20) for m in messages if "wasm_heap_bytes" in m]
    return {
        "decode_tok_s": 1000 / statistics.median(ms for _, ms in windows),
        "ms_per_token_at": probes(windows),
        "ms_per_token_series": windows,
        "wasm_heap_mb_series": heap,
        "peak_wasm_heap_mb": max(mb for _, mb in heap) if heap else None,
    }


def bare_start(browser, url):
    """Pyodide's own loadPyodide() + loadPackage("numpy") + `import numpy` in a module worker, from
    the same dist/ files, warm (the second of two starts): what a start is measured against.
    {"wall_s": as timed in the worker, "page_s": from the page's `new Worker` to the answer,
    "phases_ms", "first": the same of the first start (empty HTTP cache, no compiled code cached)}."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(READY_TIMEOUT_S * 1000)
    page.goto(f"{url}{STARTUP_PREFIX}/index.html")
    starts = []
    for _ in range(2):
        result = page.evaluate("""async () => {
            const began = performance.now();
            const result = await window.runStart({bare: true});
            return { ...result, pageMs: performance.now() - began };
        }""")
        if "error" in result:
            raise RuntimeError(result["error"])
        starts.append({"wall_s": result["readyMs"] / 1000, "page_s": result["pageMs"] / 1000,
                       "phases_ms": result["timings"]})
    context.close()
    return {**starts[1], "first": starts[0]}


def bare_start_s(browser, url):
    """bare_start's time as the worker measures it."""
    return bare_start(browser, url)["wall_s"]


def run(models, n_tokens, log):
    """{model name: figures} for each (name, folder) in `models`, each in a fresh browser profile;
    `log(message)` reports each stage."""
    from playwright.sync_api import sync_playwright

    import mamba_wasm

    log("building dist/")
    build.build(quiet=True)
    default = json.loads((ROOT / "models" / "index.json").read_text())["default"]
    site = BenchSite(build, {name: folder for name, folder in models.items() if name != default})
    results = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=provision.find_chromium(), args=provision.CHROMIUM_FLAGS)
            log("browser: bare loadPyodide + import numpy, twice (the second is measured)")
            bare = bare_start_s(browser, site.url)
            for name, folder in models.items():
                tokenizer = mamba_wasm.Tokenizer.from_file(Path(folder) / "tokenizer.json")
                context = browser.new_context()
                tab = Tab(context, site.url)
                log(f"browser, {name}: loading the page and the model (cold: empty Cache API)")
                cold = tab.open(name)
                log(f"browser, {name}: prefill of {', '.join(map(str, PROMPT_LENGTHS))}-token prompts")
                prefill = {}
                for length in PROMPT_LENGTHS:
                    started = next(m for m in tab.generate(prompt_of(tokenizer, length), 1) if m["type"] == "started")
                    prefill[str(started["n_prompt"])] = started["n_prompt"] / (started["prefill_ms"] / 1000)
                log(f"browser, {name}: decoding {n_tokens} tokens")
                figures = decode_figures(tab.generate("The ", n_tokens, temperature=0.8, seed=0))
                views_tokens = min(n_tokens, VIEWS_SHOWN_TOKENS)
                log(f"browser, {name}: decoding {views_tokens} tokens with the token view shown and coloured")
                tab.page.check("[data-testid=token-view]")
                tab.page.check("[data-testid=colour-tokens]")
                shown = decode_figures(tab.generate("The ", views_tokens, inspect=True, temperature=0.8, seed=0))
                tab.page.uncheck("[data-testid=token-view]")
                figures["decode_tok_s_views_shown"] = shown["decode_tok_s"]
                tab.wait_for_snapshot()
                log(f"browser, {name}: reloading (warm: every file and Python's snapshot in the Cache API)")
                tab.page.close()
                # Same profile: the Cache API holds every file, and Python's snapshot (then not).
                warm_tab = Tab(context, site.url)
                warm = warm_tab.open(name)
                warm_tab.forget_snapshot()
                warm_normal = warm_tab.open(name)
                context.close()
                results[name] = {"ready_cold": cold, "ready_warm": warm, "ready_warm_normal": warm_normal,
                                 "bare_start_s": bare, "prefill_tok_s": prefill, **figures}
            browser.close()
    finally:
        site.close()
    return results
