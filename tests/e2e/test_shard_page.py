"""A model split across K workers in the page (web/shard-pool.js, shard-leader.js, shard-worker.js,
reduce-transport.js), in real Chromium with real Pyodide: the site served cross-origin isolated
(build.py's COOP/COEP headers) and not.

2 workers write the same text as 1 for the same seed, greedy and sampled, through Regenerate and
Continue; Stop lands within a token; each worker's heap holds only its part; a killed worker takes
the model down with a readable error, and Reload brings it back; ?workers=N and the Workers setting
are honoured; without isolation the page says why it runs 1 worker.
"""

import json
import threading
import urllib.parse

import pytest

import build
from checkpoint_files import f16_two_shards
from conftest import READY_TIMEOUT_MS, ROOT, Site, _OverlayHandler

GREEDY = {"temperature": 0, "top_k": 0, "top_p": 1, "repetition_penalty": 1, "seed": 1}
SAMPLED = {"temperature": 0.9, "top_k": 40, "top_p": 0.95, "repetition_penalty": 1.1, "seed": 7}


@pytest.fixture(scope="module")
def isolated_server(dist):
    httpd = build.make_server(dist, port=0, handler=_OverlayHandler, isolated=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def open_site(browser):
    sites = []

    def make(base_url, query):
        site = Site(browser, base_url)
        sites.append(site)
        site.open(query)
        assert site.state() == "ready", site.text("error")
        return site

    yield make
    for site in sites:
        site.close()


def texts(site):
    """Greedy and sampled text, each generated, regenerated and continued."""
    out = []
    for params in (GREEDY, SAMPLED):
        first = site.generate("ROMEO:\n", max_new_tokens=40, **params)
        site.page.click("[data-testid=regenerate]")
        site.wait_state("ready", "error")
        again = site.text("output")
        site.fill(max_new_tokens=20)
        site.page.click("[data-testid=continue]")
        site.wait_state("ready", "error")
        out.append((first, again, site.text("output")))
    assert site.state() == "ready", site.text("error")
    return out


def test_two_workers_write_the_same_text_as_one(isolated_server, open_site):
    one = open_site(isolated_server, "?workers=1")
    two = open_site(isolated_server, "?workers=2")
    assert one.page.get_attribute("body", "data-workers") == "1"
    assert two.page.get_attribute("body", "data-workers") == "2"
    assert two.page.evaluate("self.crossOriginIsolated")
    expected = texts(one)
    assert all(len(first) > 20 for first, _, _ in expected)
    assert texts(two) == expected
    # each follower's heap got its part only: at most the leader's (which holds the tokenizer too)
    heaps = json.loads(two.page.get_attribute("body", "data-shard-heaps"))
    assert list(heaps) == ["1"]
    assert heaps["1"] <= two.last_run()["wasm_heap_bytes"]
    kinds = {t["type"] for t in two.traffic()}
    assert {"shard-load", "shard-ready"} <= kinds


def test_stop_lands_within_a_token_and_the_text_continues(isolated_server, open_site):
    site = open_site(isolated_server, "?workers=2")
    site.generate("ROMEO:\n", wait=False, max_new_tokens=100_000, **SAMPLED)
    site.page.wait_for_function("() => Number(document.querySelector('[data-testid=token-count]').textContent) > 5")
    assert site.stop()
    site.wait_state("ready")
    run = site.last_run()
    assert run["reason"] == "stopped" and run["tokens_after_stop"] <= 1
    site.fill(max_new_tokens=5)
    site.page.click("[data-testid=continue]")
    site.wait_state("ready", "error")
    assert site.state() == "ready" and site.last_run()["n_generated"] == run["n_generated"] + 5


@pytest.mark.parametrize("which", ["follower", "leader"])
def test_a_killed_worker_takes_the_model_down_and_reload_recovers(isolated_server, open_site, which):
    site = open_site(isolated_server, "?workers=2")
    site.generate("Terminate me", wait=False, max_new_tokens=100_000, **SAMPLED)
    site.page.wait_for_function("() => Number(document.querySelector('[data-testid=token-count]').textContent) > 0")
    # window.__mambaTest.workers: the leader first, then the follower
    site.page.evaluate(f"window.__mambaTest.workers[{0 if which == 'leader' else 1}].terminate()")
    site.wait_state("error", timeout_ms=10_000)
    error = site.text("error")
    assert ("Worker 2 of 2" in error if which == "follower" else "worker running Python stopped" in error), error
    assert "Reload" in error
    assert site.page.is_disabled("[data-testid=generate]")
    assert site.page.text_content("[data-testid=retry]") == "Reload"
    site.page.click("[data-testid=retry]")
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
    assert site.state() == "ready", site.text("error")
    assert len(site.generate("ROMEO:\n", max_new_tokens=10, **GREEDY)) > 0


def test_the_workers_setting_is_kept_and_the_query_wins(isolated_server, open_site):
    site = open_site(isolated_server, "")
    default = site.page.get_attribute("body", "data-workers")
    assert default == str(site.page.evaluate("""async () => {
        const { defaultWorkers } = await import(new URL('shard-pool.js', location.href).href);
        return defaultWorkers(navigator.hardwareConcurrency, self.crossOriginIsolated);
    }"""))
    site.page.fill("[data-testid=workers]", "2")
    site.page.dispatch_event("[data-testid=workers]", "change")
    site.page.reload()
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
    assert site.page.get_attribute("body", "data-workers") == "2"
    assert site.state() == "ready", site.text("error")
    site.page.goto(isolated_server + "?workers=1")
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
    assert site.page.get_attribute("body", "data-workers") == "1"
    site.page.goto(isolated_server + "?workers=many")
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
    assert "?workers=many is not a whole number" in site.text("workers-note")
    assert site.page.get_attribute("body", "data-workers") == "2"  # the setting


def test_without_isolation_the_page_says_why_it_runs_one_worker(server, open_site):
    site = open_site(server, "?workers=2")
    assert not site.page.evaluate("self.crossOriginIsolated")
    assert site.page.get_attribute("body", "data-workers") == "1"
    assert "not cross-origin isolated" in site.text("workers-note")
    assert len(site.generate("ROMEO:\n", max_new_tokens=10, **GREEDY)) > 0
    assert "shard-load" not in {t["type"] for t in site.traffic()}


def f16_sharded(folder):
    """{file name: bytes}: the model in two F16 shard files plus the index, as a Hub repository has it."""
    return {"config.json": (folder / "config.json").read_bytes(), "tokenizer.json": (folder / "tokenizer.json").read_bytes(),
            **f16_two_shards((folder / "model.safetensors").read_bytes())}


def test_a_sharded_f16_model_by_url_on_two_workers_writes_one_workers_text(isolated_server, server, mount, open_site):
    """Mamba-2, two weight files: each worker gets its part of both."""
    files = f16_sharded(ROOT / "models" / "shakespeare-mamba2")
    base = mount("shard-f16", {f"m2/{name}": data for name, data in files.items()}) + "m2/"
    base = isolated_server + base.removeprefix(server)
    query = "?model=" + urllib.parse.quote(base, safe=":/")
    one = open_site(isolated_server, query + "&workers=1")
    two = open_site(isolated_server, query + "&workers=2")
    assert [one.generate("ROMEO:\n", max_new_tokens=30, **params) for params in (GREEDY, SAMPLED)] == \
        [two.generate("ROMEO:\n", max_new_tokens=30, **params) for params in (GREEDY, SAMPLED)]
    assert json.loads(two.page.get_attribute("body", "data-shard-heaps"))


def test_a_model_too_large_for_one_heap_is_offered_split(isolated_server, server, mount, browser):
    """A mamba-790m-shaped config (3.2 GB as float32): refused on 1 worker with the way to split
    it; on 2 workers the size check passes (its tiny weight file then fails to load, by name)."""
    config = {**json.loads((ROOT / "models" / "tiny-random" / "config.json").read_text()), "hidden_size": 1536,
              "intermediate_size": 3072, "num_hidden_layers": 48, "vocab_size": 50280}
    files = {"config.json": json.dumps(config).encode(),
             **{n: (ROOT / "models" / "tiny-random" / n).read_bytes() for n in ("model.safetensors", "tokenizer.json")}}
    base = mount("shard-huge", {f"huge/{name}": data for name, data in files.items()}) + "huge/"
    messages = {}
    for workers, url in ((1, base), (2, isolated_server + base.removeprefix(server))):
        site = Site(browser, server if workers == 1 else isolated_server)
        try:
            site.open(f"?workers={workers}&model=" + urllib.parse.quote(url, safe=":/"))
            assert site.state() == "error"
            messages[workers] = site.text("error")
        finally:
            site.close()
    assert "too large" in messages[1] and "It fits split across 2 workers" in messages[1], messages[1]
    assert "?workers=2" in messages[1]
    assert "too large" not in messages[2] and "model.safetensors" in messages[2], messages[2]
