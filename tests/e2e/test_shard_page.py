"""A model split across K workers in the page (web/shard-pool.js, shard-leader.js, shard-worker.js,
reduce-transport.js), in real Chromium with real Pyodide: the site served cross-origin isolated
(build.py's COOP/COEP headers) and not.

2 workers write the same text as 1 for the same seed, greedy and sampled, through Regenerate and
Continue, through shared memory (isolated) and over MessageChannels (not); Stop lands within a
token; each worker's heap holds only its part; a killed worker takes the model down with a readable
error, and Reload brings it back; ?workers=N and the Workers setting are honoured; without isolation
nor JSPI the page says why it runs 1 worker; a model over one worker's
weight limit (lowered by the test-only ?worker_weight_limit= so that a small model is "too large") is
refused on 1 worker with the count it needs, and on that count loads and writes the native text.
"""

import json
import threading
import urllib.parse

import pytest

import build
from checkpoint_files import f16_two_shards
from conftest import READY_TIMEOUT_MS, ROOT, Site, _OverlayHandler
from native_runs import native_text
from mamba_wasm.plan import describe_config

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


@pytest.fixture(params=["shared memory", "MessageChannel"])
def transport_server(request):
    """The site cross-origin isolated (the workers sum through shared memory) or not (MessageChannels)."""
    return request.getfixturevalue("isolated_server" if request.param == "shared memory" else "server")


def test_stop_lands_within_a_token_and_the_text_continues(transport_server, open_site):
    site = open_site(transport_server, "?workers=2")
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
def test_a_killed_worker_takes_the_model_down_and_reload_recovers(transport_server, open_site, which):
    site = open_site(transport_server, "?workers=2")
    assert site.page.get_attribute("body", "data-workers") == "2"
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


def test_without_isolation_two_workers_over_message_channels_write_the_same_text_as_one(server, open_site):
    one = open_site(server, "?workers=1")
    two = open_site(server, "?workers=2")
    assert not two.page.evaluate("self.crossOriginIsolated")
    assert two.page.get_attribute("body", "data-workers") == "2"
    assert "MessageChannels" in two.text("workers-note")
    expected = texts(one)
    assert texts(two) == expected
    assert json.loads(two.page.get_attribute("body", "data-shard-heaps"))
    assert {"shard-load", "shard-ready"} <= {t["type"] for t in two.traffic()}
    assert two.protocol_problems() == []


def test_without_isolation_nor_jspi_the_page_says_why_it_runs_one_worker(server, browser):
    """A browser that cannot suspend WebAssembly on a promise (no WebAssembly.Suspending)."""
    site = Site(browser, server)
    try:
        site.context.add_init_script("delete WebAssembly.Suspending;")
        site.open("?workers=2")
        assert site.state() == "ready", site.text("error")
        assert site.page.get_attribute("body", "data-workers") == "1"
        note = site.text("workers-note")
        assert "not cross-origin isolated" in note and "Promise Integration" in note, note
        assert len(site.generate("ROMEO:\n", max_new_tokens=10, **GREEDY)) > 0
        assert "shard-load" not in {t["type"] for t in site.traffic()}
    finally:
        site.close()


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


def test_a_model_over_the_worker_limit_loads_on_enough_workers_and_writes_the_native_text(isolated_server, server,
                                                                                         mount, browser):
    """The path a mamba-790m-sized model takes (docs/SHARDING.md), on the demo model: its float32
    weights over the (lowered) limit of one worker, under that of 2."""
    folder = ROOT / "models" / "shakespeare"
    float32_bytes = describe_config((folder / "config.json").read_bytes())["float32_bytes"]
    limit = int(float32_bytes * 0.6)
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors", "tokenizer.json")}
    base = isolated_server + mount("shard-limit", {f"m/{name}": data for name, data in files.items()}).removeprefix(server)
    query = f"?worker_weight_limit={limit}&model=" + urllib.parse.quote(base + "m/", safe=":/")
    refused = Site(browser, isolated_server)
    try:
        refused.open(query + "&workers=1")
        assert refused.state() == "error"
        error = refused.text("error")
        assert "too large" in error and f"at most {limit / 1e9:.1f} GB" in error, error
        assert "It fits split across 2 workers" in error and "?workers=2" in error, error
        assert "plan" not in {t["type"] for t in refused.traffic()}  # refused before any weight was fetched
    finally:
        refused.close()
    split = Site(browser, isolated_server)
    try:
        split.open(query + "&workers=2")
        assert split.state() == "ready", split.text("error")
        assert split.page.get_attribute("body", "data-workers") == "2"
        heaps = json.loads(split.page.get_attribute("body", "data-shard-heaps"))
        assert list(heaps) == ["1"]
        for params in (GREEDY, SAMPLED):
            text = split.generate("ROMEO:\n", max_new_tokens=30, **params)
            sent = split.page.evaluate("window.__mambaTest.traffic.filter((t) => t.direction === 'to-worker'"
                                       " && t.msg.type === 'generate').at(-1).msg.params")
            assert len(text) > 20 and text == native_text(folder, "ROMEO:\n", sent)
    finally:
        split.close()
