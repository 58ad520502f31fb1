"""A first visit's start in the real page: Python starts (from the site's snapshot, or normally when
that fails) while the model still downloads (the model's file is held back by the test until Python,
NumPy and the package have started and the memory snapshot is saved), and a model download that
fails meanwhile gives a readable error, keeps the started Python, and Retry then loads the model
without starting Python again."""

import json

import pytest

MODEL_FILE = "**/models/shakespeare/model.safetensors"
BUILT_SNAPSHOT = "**/py/built-snapshot.bin.gz"
PYTHON_ANNOUNCED = ("() => window.__mambaTest.traffic.some((t) => t.msg && t.msg.type === 'progress'"
                    " && t.msg.phase === 'python')")
# Saved in the background once Python, NumPy and the package are imported: Python's start is over.
SNAPSHOT_SAVED = """() => caches.open('mamba-wasm-v1').then((c) => c.keys())
    .then((keys) => keys.some((r) => r.url.includes('python-snapshot')))"""


def timings_of(site):
    return json.loads(site.page.get_attribute("body", "data-timings"))


def hold_model_file(site):
    """Requests for the default model's weights, answered only when the test says so."""
    held = []
    site.context.route(MODEL_FILE, lambda route: held.append(route))
    return held


def start_python_while_the_model_is_held(site, held):
    site.page.goto(site.base_url)
    site.page.wait_for_function(PYTHON_ANNOUNCED, timeout=120_000)
    site.wait_until(SNAPSHOT_SAVED, timeout_ms=300_000)
    assert len(held) == 1, "the model's weights were not requested while Python started"
    assert site.state() == "loading"


@pytest.mark.parametrize("start", ["snapshot", "normal"])
def test_python_starts_while_the_model_downloads(new_site, start):
    site = new_site()
    if start == "normal":  # the site's snapshot fails to download
        site.context.route(BUILT_SNAPSHOT, lambda route: route.fulfill(status=503, body="busy"))
    held = hold_model_file(site)
    start_python_while_the_model_is_held(site, held)
    held[0].continue_()
    site.wait_state("ready", "error", timeout_ms=120_000)
    assert site.state() == "ready", site.text("error")
    timings = timings_of(site)
    assert timings["start"] == start, timings
    spans = timings["spans"]
    python_began, python_ended = spans["python"]
    download_began, download_ended = spans["download"]
    assert download_began < python_began < python_ended < download_ended, json.dumps(timings)
    assert timings["download_rest_ms"] > 0, timings
    assert len(site.generate("ROMEO:", max_new_tokens=10, seed=3)) > 0


def test_a_model_download_failing_while_python_starts_keeps_the_page_usable(new_site):
    site = new_site()
    held = hold_model_file(site)
    start_python_while_the_model_is_held(site, held)
    held[0].fulfill(status=503, body="busy")
    site.wait_state("ready", "error", timeout_ms=120_000)
    assert site.state() == "error"
    error = site.text("error")
    assert "model.safetensors" in error and "HTTP 503" in error, error
    assert site.page.is_visible("[data-testid=retry]")
    site.context.unroute(MODEL_FILE)
    site.page.click("[data-testid=retry]")
    site.wait_state("ready", "error", timeout_ms=120_000)
    assert site.state() == "ready", site.text("error")
    timings = timings_of(site)
    assert "start" not in timings, f"Python was started again: {timings}"
    assert len(site.generate("ROMEO:", max_new_tokens=10, seed=3)) > 0


def test_a_runtime_file_failing_gives_a_readable_error_and_retry_starts_python(new_site):
    """pyodide.asm.wasm is compiled beside the rest of the start (compiled-wasm.js): its failure ends
    the start with the download's own message, not a start that never ends."""
    site = new_site()
    wasm = "**/pyodide/pyodide.asm.wasm"
    site.context.route(wasm, lambda route: route.fulfill(status=503, body="busy"))
    site.open()
    assert site.state() == "error"
    error = site.text("error")
    assert "pyodide/pyodide.asm.wasm" in error and "HTTP 503" in error, error
    site.context.unroute(wasm)
    site.page.click("[data-testid=retry]")
    site.wait_state("ready", "error", timeout_ms=300_000)
    assert site.state() == "ready", site.text("error")
    assert timings_of(site)["start"] == "snapshot"
    assert len(site.generate("ROMEO:", max_new_tokens=10, seed=3)) > 0
