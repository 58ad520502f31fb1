"""A hostile model server (issue 15), in real headless Chromium: a second local server on another
port (cross-origin, CORS allowed unless a test says otherwise) serves crafted model folders that
the page loads by URL while it has the default model. Each case ends with the page still ready on
the model it had, a message naming the real problem, and the server's log showing what was (not)
fetched. docs/RELIABILITY.md ("Hostile server") maps each case to its test.
"""

import http.server
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mamba_wasm.plan import describe_config
from mamba_wasm.safetensors import read_safetensors, write_safetensors

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "tiny-random"
MB = 1 << 20
CHUNK = 64 * 1024


class Route:
    """One file of the hostile server: its bytes, what HEAD says, what GET sends."""

    def __init__(self, body=b"", head_size="true", get_extra=0, get_length=True, cors=True, delay=0.0):
        self.body = body
        self.head_size = head_size  # "true": len(body); None: no Content-Length; an int: that
        self.get_extra = get_extra  # zero bytes GET sends after the body
        self.get_length = get_length  # GET sends a Content-Length (of body + extra)
        self.cors = cors
        self.delay = delay  # seconds before answering (to see requests in flight)


class HostileServer:
    """A threading server of Routes; records every request and the bytes it sent."""

    def __init__(self):
        self.routes = {}
        self.log = []  # (method, path)
        self.sent = {}  # path -> bytes of body written
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def answer(self, head):
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.log.append(("HEAD" if head else "GET", path))
                route = server.routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Access-Control-Allow-Origin", "*")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                time.sleep(route.delay)
                self.send_response(200)
                if route.cors:
                    self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Type", "application/octet-stream")
                if head:
                    if route.head_size is not None:
                        self.send_header("Content-Length", str(len(route.body) if route.head_size == "true"
                                                               else route.head_size))
                    else:
                        self.close_connection = True  # no length: nothing more on this connection
                    self.end_headers()
                    return
                if route.get_length:
                    self.send_header("Content-Length", str(len(route.body) + route.get_extra))
                else:
                    self.close_connection = True  # the body ends when the connection does
                self.end_headers()
                self.stream(path, route)

            def stream(self, path, route):
                sent = 0
                try:
                    self.wfile.write(route.body)
                    sent = len(route.body)
                    zeros = bytes(CHUNK)
                    while sent < len(route.body) + route.get_extra:
                        self.wfile.write(zeros)
                        sent += CHUNK
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the page stopped reading
                finally:
                    server.sent[path] = sent

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def folder(self, name, files):
        """Serve {file name: bytes or Route} under /name/; returns the folder's URL."""
        for file, value in files.items():
            self.routes[f"/{name}/{file}"] = value if isinstance(value, Route) else Route(value)
        return f"{self.url}{name}/"

    def requests_under(self, name):
        return [(method, path) for method, path in self.log if path.startswith(f"/{name}/")]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def hostile():
    server = HostileServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def model_files():
    return {name: (MODEL / name).read_bytes() for name in ("config.json", "model.safetensors", "tokenizer.json")}


def safetensors_bytes(tensors):
    buffer = io.BytesIO()
    write_safetensors(buffer, {name: np.array(array) for name, array in tensors.items()})
    return buffer.getvalue()


def load_url(site, base):
    """Load the model folder at `base` through the URL field; the error text once that load ended."""
    site.page.evaluate("() => { delete document.body.dataset.modelSource; "
                       "document.querySelector('[data-testid=status]').textContent = ''; }")
    site.page.fill("[data-testid=model-url]", base)
    site.page.click("[data-testid=load-url]")
    site.page.wait_for_function(
        "() => document.body.dataset.modelSource !== undefined || document.body.dataset.state === 'error'"
        " || document.querySelector('[data-testid=status]').textContent.includes('still using')",
        timeout=180_000)
    return site.text("error") or ""


def assert_still_ready(site):
    assert site.state() == "ready", site.text("status")
    assert "still using" in site.text("status"), site.text("status")


def test_weights_larger_than_the_config_implies_are_refused_before_downloading(site, hostile, model_files):
    """The issue's tiny model followed by trailing data, its size told truthfully by HEAD."""
    extra = 50 * MB
    base = hostile.folder("trailing", {**model_files, "model.safetensors": Route(
        model_files["model.safetensors"] + bytes(extra))})
    message = load_url(site, base)
    limit = describe_config(model_files["config.json"])["max_weight_bytes"] + MB
    assert f"its weight files hold {len(model_files['model.safetensors']) + extra:,} bytes" in message, message
    assert f"config.json implies at most {limit:,}" in message and "Nothing was downloaded" in message, message
    assert ("GET", "/trailing/model.safetensors") not in hostile.log
    assert_still_ready(site)


def test_a_download_past_the_size_head_gave_is_stopped(site, hostile, model_files):
    """HEAD says the honest size; GET then sends 200 MB more (with, then without, a Content-Length)."""
    honest = len(model_files["model.safetensors"])
    for name, length in (("liar", True), ("liar-unsized", False)):
        base = hostile.folder(name, {**model_files, "model.safetensors": Route(
            model_files["model.safetensors"], get_extra=200 * MB, get_length=length)})
        message = load_url(site, base)
        assert f"{name}/model.safetensors: the server sent more than {honest:,} bytes, the size the server " \
               "gave for this file before the download. The download was stopped." in message, message
        time.sleep(0.5)
        assert hostile.sent.get(f"/{name}/model.safetensors", 0) < honest + 32 * MB, hostile.sent
        assert_still_ready(site)


def test_a_download_of_unknown_size_is_stopped_at_what_the_config_implies(site, hostile, model_files):
    """No Content-Length anywhere, and an endless body: cut off at the config's bound."""
    base = hostile.folder("endless", {**model_files, "model.safetensors": Route(
        model_files["model.safetensors"], head_size=None, get_extra=1 << 40, get_length=False)})
    message = load_url(site, base)
    limit = describe_config(model_files["config.json"])["max_weight_bytes"] + MB
    assert f"the server sent more than {limit:,} bytes, the most config.json's tensors can fill" in message, message
    time.sleep(0.5)
    assert hostile.sent.get("/endless/model.safetensors", 0) < limit + 32 * MB, hostile.sent
    assert_still_ready(site)


def test_an_index_of_50000_shards_is_refused_without_a_request(site, hostile, model_files):
    index = {"weight_map": {f"t{i}": f"model-{i:05d}-of-50000.safetensors" for i in range(50_000)}}
    base = hostile.folder("many", {"config.json": model_files["config.json"],
                                   "model.safetensors.index.json": json.dumps(index).encode(),
                                   "tokenizer.json": model_files["tokenizer.json"]})
    message = load_url(site, base)
    assert "the index names 50,000 shard files; the limit is 256" in message, message
    assert "CORS" not in message
    assert not [p for _, p in hostile.requests_under("many") if "-of-50000" in p]
    assert_still_ready(site)


def test_shards_are_fetched_a_few_at_a_time(site, hostile, model_files):
    """Every tensor in its own shard, each answer delayed: at most 6 requests in flight, and it loads."""
    tensors = read_safetensors(model_files["model.safetensors"])
    files = {"config.json": model_files["config.json"], "tokenizer.json": Route(model_files["tokenizer.json"])}
    weight_map = {}
    for i, name in enumerate(sorted(tensors)):
        shard = f"model-{i + 1:05d}-of-{len(tensors):05d}.safetensors"
        files[shard] = Route(safetensors_bytes({name: tensors[name]}), delay=0.1)
        weight_map[name] = shard
    files["model.safetensors.index.json"] = json.dumps({"weight_map": weight_map}).encode()
    base = hostile.folder("pool", files)
    # Counted as the browser issues them (the server alone would see at most the 6 connections
    # Chromium opens per host, however many requests wait for one), from the request to its
    # response's headers: the browser reports a request's end only some time after the page got it.
    counts = {"now": 0, "most": 0}

    def started(request):
        if request.url.startswith(base):
            counts["now"] += 1
            counts["most"] = max(counts["most"], counts["now"])

    def ended(request_or_response):
        if request_or_response.url.startswith(base):
            counts["now"] -= 1

    site.context.on("request", started)
    site.context.on("response", ended)
    site.context.on("requestfailed", ended)
    try:
        message = load_url(site, base)
    finally:
        for event, handler in (("request", started), ("response", ended), ("requestfailed", ended)):
            site.context.remove_listener(event, handler)
    assert not message, message
    assert json.loads(site.page.get_attribute("body", "data-model-source"))["kind"] == "url"
    assert len(tensors) > 12 and 1 < counts["most"] <= 6, counts


@pytest.mark.parametrize("shard", ["%2e%2e", "..%2fconfig.json", "https:evil.example"])
def test_a_shard_name_that_is_not_a_plain_file_name_is_refused(site, hostile, model_files, shard):
    index = {"weight_map": {"backbone.norm_f.weight": shard}}
    folder = f"escape{len(hostile.routes)}"
    base = hostile.folder(folder, {"config.json": model_files["config.json"],
                                   "model.safetensors.index.json": json.dumps(index).encode(),
                                   "tokenizer.json": model_files["tokenizer.json"]})
    message = load_url(site, base)
    assert "must be a plain file name in the model's folder" in message, message
    assert all(path.startswith(f"/{folder}/") for _, path in hostile.log[-3:]), hostile.log[-3:]
    assert not [p for _, p in hostile.log if "evil" in p or p.endswith("/config.json%2e%2e")]
    assert_still_ready(site)


def test_errors_name_the_real_cause(site, hostile, model_files):
    # a 404 for one shard
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    base = hostile.folder("missing", {"config.json": model_files["config.json"],
                                      "model.safetensors.index.json": json.dumps(index).encode(),
                                      "model-00001-of-00002.safetensors": model_files["model.safetensors"],
                                      "tokenizer.json": model_files["tokenizer.json"]})
    message = load_url(site, base)
    assert "model-00002-of-00002.safetensors: the server answered HTTP 404" in message, message
    assert_still_ready(site)

    # a server that does not allow cross-origin reads
    base = hostile.folder("nocors", {name: Route(data, cors=False) for name, data in model_files.items()})
    message = load_url(site, base)
    assert "the server answered, but does not allow cross-origin requests (CORS" in message, message
    assert_still_ready(site)

    # nothing listening on the port
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    message = load_url(site, f"http://127.0.0.1:{port}/model/")
    assert "cannot connect to the server" in message and "CORS" not in message, message
    assert_still_ready(site)


@pytest.mark.parametrize("url", ["data:text/plain,x/", "javascript:alert(1)//", "file:///etc/", "ftp://127.0.0.1/m/"])
def test_only_http_urls_and_site_paths_are_models(site, url):
    """Refused by the page before the worker hears of it (the worker refuses them too: downloads.js)."""
    site.page.fill("[data-testid=model-url]", url)
    site.page.click("[data-testid=load-url]")
    site.page.wait_for_function(
        "() => (document.querySelector('[data-testid=error]')?.textContent || '').includes('is not a web address')")
    assert url in site.text("error") and site.state() == "ready"


def test_a_failed_load_leaves_nothing_alive_in_python(site, hostile, model_files):
    """Objects tracked by Python's GC after a generation, before and after two failed loads (every
    tensor upcast, then a NaN in the last): the same; the WASM heap does not grow on the second."""
    tensors = {k: np.array(v, dtype=np.float16) for k, v in read_safetensors(model_files["model.safetensors"]).items()}
    tensors["backbone.norm_f.weight"][0] = np.nan
    base = hostile.folder("nan", {**model_files, "model.safetensors": safetensors_bytes(tensors)})

    def objects_and_heap():
        site.generate("Count", max_new_tokens=3, seed=1)
        run = site.last_run()
        return run["python_objects"], run["wasm_heap_bytes"]

    objects, _ = objects_and_heap()
    assert "non-finite" in load_url(site, base)
    after_one, heap_one = objects_and_heap()
    assert "non-finite" in load_url(site, base)
    after_two, heap_two = objects_and_heap()
    assert after_one - objects < 50 and after_two - objects < 50, (objects, after_one, after_two)
    assert heap_two == heap_one, (heap_one, heap_two)
