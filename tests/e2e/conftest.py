"""Fixtures for the end-to-end tests: the built site, a static server, and headless Chromium.

The site under test is the real dist/ (built here, incrementally, by build.py), served by a plain
static file server on 127.0.0.1. A test that needs a broken or extra file (a corrupt model, say)
mounts an overlay: a folder served under its own URL prefix, in front of dist/, so the pristine
site at / is never changed. Chromium is the system's (provision.find_chromium), never a download.

A missing browser or Playwright is a failure that says what to install, never a skip:
`python3 build.py test` installs both.
"""

import json
import pathlib
import posixpath
import threading
import time
import urllib.parse

import pytest

import build  # build.py and provision.py: the repository root is on sys.path (pyproject.toml, pytest)
import provision

ROOT = pathlib.Path(__file__).resolve().parents[2]
READY_TIMEOUT_MS = 180_000  # Pyodide's first start on a loaded 2-core machine can take a while
TIMINGS = {}  # name -> text, printed at the end of the run


def _unavailable(reason):
    pytest.fail(reason)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("end-to-end timings (headless Chromium)")
        for name, text in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {text}")


# ---- the site and its server -------------------------------------------------------------------

@pytest.fixture(scope="session")
def dist():
    try:
        build.build(quiet=True)
    except build.BuildError as e:
        pytest.fail(f"building dist/ failed: {e}")
    return build.DIST


class _OverlayHandler(build.StaticHandler):
    """build.py's static handler; a path under a mounted prefix is served from that overlay
    folder when it has the file, else from dist/ (the rest of the URL after the prefix)."""

    quiet = True
    mounts = {}  # prefix ("fault-corrupt") -> overlay folder
    requested = []  # every path asked for, in order
    # URL path -> a network fault served instead of the file, until a test removes it:
    # "404"; "drop" (full Content-Length, then the connection closes after half the bytes);
    # "slow" (2 kB every 50 ms); "tamper" (the file with one byte changed); "no-range" (the whole
    # file, 64 kB every 10 ms, whatever Range asked: a server without byte ranges).
    faults = {}
    sent = {}  # URL path -> bytes a "no-range" fault wrote before the page hung up
    replaced = {}  # URL path -> bytes served instead of dist/'s file (a new build), until removed

    def do_GET(self):
        if self.path.split("?", 1)[0] in self.replaced:
            data = self.replaced[self.path.split("?", 1)[0]]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        fault = self.faults.get(self.path.split("?", 1)[0])
        if fault is None:
            return super().do_GET()
        path = pathlib.Path(self.translate_path(self.path))
        if fault == "404":
            self.send_error(404)
            return
        data = bytearray(path.read_bytes())
        if fault == "tamper":
            data[len(data) // 2] ^= 0xFF
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.close_connection = True
        try:
            if fault == "drop":
                self.wfile.write(data[: len(data) // 2])
            elif fault == "no-range":
                path_only = self.path.split("?", 1)[0]
                self.sent[path_only] = 0
                for start in range(0, len(data), 65536):
                    self.wfile.write(data[start:start + 65536])
                    self.wfile.flush()
                    self.sent[path_only] += len(data[start:start + 65536])
                    time.sleep(0.01)
            elif fault == "slow":
                for start in range(0, len(data), 2048):
                    self.wfile.write(data[start:start + 2048])
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page cancelled

    def translate_path(self, path):
        _OverlayHandler.requested.append(path)
        clean = posixpath.normpath(urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0]))
        parts = [p for p in clean.split("/") if p and p not in (".", "..")]
        if parts and parts[0] in self.mounts:
            candidate = self.mounts[parts[0]].joinpath(*parts[1:])
            if candidate.is_file():
                return str(candidate)
            return str(build.DIST.joinpath(*parts[1:]))
        return super().translate_path(path)


@pytest.fixture(scope="session")
def server(dist):
    httpd = build.make_server(dist, port=0, handler=_OverlayHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def mount(server, tmp_path_factory):
    """mount(prefix, {relative path: bytes}) -> the URL of dist/ with those files overlaid."""

    def add(prefix, files):
        folder = tmp_path_factory.mktemp(prefix)
        for rel, data in files.items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _OverlayHandler.mounts[prefix] = folder
        return f"{server}{prefix}/"

    return add


# ---- the browser -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -r requirements-test.txt)")
    try:
        executable = provision.find_chromium()
    except provision.ProvisionError as e:
        _unavailable(str(e))
    if executable is None:
        _unavailable("no Chromium found: set MAMBA_WASM_CHROMIUM, or install one "
                     "(apt-get install -y chromium); `python3 build.py test` does this")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=provision.CHROMIUM_FLAGS)
        yield browser
        browser.close()


# Run in every page before its own scripts: keeps each Worker the page makes (so a test can
# terminate it) and records every message between page and worker, both directions, for
# Site.protocol_problems (web/protocol.js checks them).
RECORD_WORKERS_JS = """
(() => {
  const record = { traffic: [], workers: [] };
  Object.defineProperty(window, "__mambaTest", { value: record });
  const NativeWorker = window.Worker;
  window.Worker = class extends NativeWorker {
    constructor(...args) {
      super(...args);
      record.workers.push(this);
      this.addEventListener("message", (e) => record.traffic.push({ direction: "to-page", msg: e.data }));
    }
    postMessage(msg, ...rest) {
      record.traffic.push({ direction: "to-worker", msg });
      return super.postMessage(msg, ...rest);
    }
  };
})();
"""


class Site:
    """One browser context (its own Cache API storage) and page, with every request recorded."""

    def __init__(self, browser, base_url, viewport=(1280, 800)):
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.context.add_init_script(RECORD_WORKERS_JS)
        self.requests = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()
        self.console = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def open(self, query=""):
        """Load the page and wait until it settles (ready or error); seconds it took."""
        started = time.monotonic()
        self.page.goto(self.base_url + query)
        self.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
        return time.monotonic() - started

    def phases(self):
        """The worker's time per loading phase, as "name 1.23 s" text."""
        raw = json.loads(self.page.get_attribute("body", "data-timings") or "{}")
        return ", ".join(f"{k.removesuffix('_ms')} {v / 1000:.2f} s" if isinstance(v, (int, float)) else f"{k} {v}"
                         for k, v in raw.items())

    def last_run(self):
        """Figures of the latest generation (prompt tokens, prefill ms, tokens/s, ...)."""
        return json.loads(self.page.get_attribute("body", "data-last-run") or "{}")

    def state(self):
        return self.page.get_attribute("body", "data-state")

    def wait_state(self, *states, timeout_ms=60_000):
        selector = ", ".join(f"body[data-state={s}]" for s in states)
        try:
            self.page.wait_for_selector(selector, timeout=timeout_ms)
        except Exception:
            print("\n".join(self.console[-30:]))
            raise

    def wait_until(self, expression, timeout_ms=120_000):
        """Evaluate `expression` (JavaScript) until its value, a promise's awaited, is truthy.
        (wait_for_function takes a promise itself for truthy: it cannot wait on the Cache API.)"""
        deadline = time.monotonic() + timeout_ms / 1000
        while not self.page.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout_ms} ms: {expression}")
            time.sleep(0.1)

    def text(self, testid):
        return self.page.text_content(f"[data-testid={testid}]")

    def fill(self, **params):
        for testid, value in params.items():
            self.page.fill(f"[data-testid={testid.replace('_', '-')}]", str(value))

    def generate(self, prompt="The ", wait=True, **params):
        self.page.fill("[data-testid=prompt]", prompt)
        self.fill(**params)
        self.page.click("[data-testid=generate]")
        if wait:
            self.wait_state("ready", "error")
            return self.text("output")
        return None

    def stop(self):
        """Click Stop if a generation is still running; False if it had already ended. One step
        in the page, so a generation that ends on its own cannot slip in between check and click."""
        return self.page.evaluate("""() => {
            if (document.body.dataset.state !== 'generating') return false;
            document.querySelector('[data-testid=stop]').click();
            return true;
        }""")

    def traffic(self):
        """Every message between page and worker since the page loaded: [{direction, type}]."""
        return self.page.evaluate("window.__mambaTest.traffic.map((t) => ({direction: t.direction, "
                                  "type: t.msg && t.msg.type}))")

    def protocol_problems(self):
        """What web/protocol.js finds wrong with the messages recorded since the page loaded."""
        return self.page.evaluate("""async () => {
            const { problems } = await import(new URL('protocol.js', location.href).href);
            return window.__mambaTest.traffic.flatMap((t) => problems(t.direction, t.msg));
        }""")

    def close(self):
        """Close, after checking that every message sent followed the protocol."""
        try:
            found = [] if self.page.is_closed() else self.protocol_problems()
        finally:
            self.context.close()
        assert not found, f"messages outside web/protocol.js: {found[:10]}"


@pytest.fixture(scope="module")
def site(browser, server):
    """A page of the default site that reached ready, shared by the tests of one module."""
    site = Site(browser, server)
    seconds = site.open()
    assert site.state() == "ready", f"page did not reach ready: {site.text('error')}"
    TIMINGS["time to ready, cold (new browser context, empty Cache API)"] = \
        f"{seconds:.2f} s ({site.phases()})"
    yield site
    site.close()


@pytest.fixture
def new_site(browser, server):
    """A fresh browser context for tests that need their own (nothing cached)."""
    sites = []

    def make(base_url=server, viewport=(1280, 800)):
        sites.append(Site(browser, base_url, viewport))
        return sites[-1]

    yield make
    for s in sites:
        s.close()


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


@pytest.fixture(scope="session")
def timings():
    """A dict: name -> measured figure, printed in pytest's summary at the end of the run."""
    return TIMINGS
