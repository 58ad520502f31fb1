"""Faults the page must survive, injected into real headless Chromium (docs/RELIABILITY.md).

One page, shared by the module, is served under the prefix /fault-page/ with its own
manifest.json and models/index.json: the default model plus copies of it that the tests break.
The network faults come from the test server (conftest._OverlayHandler.faults: a 404, a
connection dropped after half the bytes, a slow trickle, a changed byte), and each test removes
its fault again to show that Retry then works. Each test starts and ends with the default model
loaded and the page ready, so they can share the page; the terminated-worker test, which reloads
the page, runs last.
"""

import hashlib
import json
import re
import time
import urllib.parse

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from conftest import READY_TIMEOUT_MS, _OverlayHandler

PREFIX = "fault-page"
DEFAULT = "tiny-random"
FILES = ["config.json", "model.safetensors", "tokenizer.json"]
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
GREEDY = dict(temperature=0, top_k=0, top_p=1, repetition_penalty=1)

# Bad files, each a copy of the default model with one file broken, and the message it must give.
BAD_FILES = {
    "truncated": ("model.safetensors", r"outside the \d+-byte data section \(truncated file\?\)"),
    "nan-weights": ("model.safetensors", r"holds non-finite values \(inf or nan\)"),
    "wrong-shape": ("model.safetensors", r"tensor 'backbone\.layers\.0\.mixer\.D' has shape \(127,\), "
                                         r"expected \(128,\)"),
    "bad-tokenizer": ("tokenizer.json", r"tokenizer\.json: not valid JSON"),
}


def _bad_file(kind, good):
    weights = (good / "model.safetensors").read_bytes()
    if kind == "truncated":
        return weights[: len(weights) - 1000]
    if kind == "bad-tokenizer":
        return (good / "tokenizer.json").read_bytes()[:5000]
    tensors = load_safetensors(weights)
    if kind == "nan-weights":
        tensors["backbone.layers.1.mixer.dt_proj.bias"][3] = np.nan
    else:
        tensors["backbone.layers.0.mixer.D"] = tensors["backbone.layers.0.mixer.D"][:127].copy()
    return save_safetensors(tensors)


def _shards(good):
    """The default model split in two shards with its index, as Hugging Face writes big models."""
    tensors = load_safetensors((good / "model.safetensors").read_bytes())
    names = sorted(tensors)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    files = {shard: save_safetensors({n: tensors[n] for n in half}) for shard, half in zip(SHARDS, halves)}
    index = {"metadata": {}, "weight_map": {n: shard for shard, half in zip(SHARDS, halves) for n in half}}
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    return files


@pytest.fixture(scope="module")
def fault_site(browser, dist, mount):
    """The page under /fault-page/, ready with the default model. Models offered besides it:
    copies listed in the overlay's manifest.json (verified and cached like the default), for the
    network faults; and unlisted broken copies, for the file faults."""
    from conftest import Site

    index = json.loads((dist / "models" / "index.json").read_text())
    manifest = json.loads((dist / "manifest.json").read_text())
    good = dist / "models" / next(m for m in index["models"] if m["name"] == DEFAULT)["path"]
    overlay, entries = {}, [m for m in index["models"] if m["name"] == DEFAULT]

    def offer(name, files, listed):
        entries.append({"name": name, "path": name, "description": f"fault test: {name}",
                        "files": list(files)})
        for file, data in files.items():
            overlay[f"models/{name}/{file}"] = data
            if listed:
                manifest["files"][f"models/{name}/{file}"] = {
                    "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    copy = {f: (good / f).read_bytes() for f in FILES}
    for name in ["dropped", "tampered", "slow"]:
        offer(name, copy, listed=True)
    offer("sharded", {"config.json": copy["config.json"], **_shards(good),
                      "tokenizer.json": copy["tokenizer.json"]}, listed=True)
    for kind, (broken_file, _) in BAD_FILES.items():
        offer(kind, {**copy, broken_file: _bad_file(kind, good)}, listed=False)
    overlay["models/index.json"] = json.dumps({"default": DEFAULT, "models": entries}).encode()
    overlay["manifest.json"] = json.dumps(manifest).encode()
    site = Site(browser, mount(PREFIX, overlay))
    site.open()
    assert site.state() == "ready", (site.text("error"), site.console)
    yield site
    site.close()


@pytest.fixture
def fault():
    """fault(model, file, kind): serve that fault for the file until heal() or the test's end."""
    paths = []

    def inject(model, file, kind):
        paths.append(f"/{PREFIX}/models/{model}/{file}")
        _OverlayHandler.faults[paths[-1]] = kind

    def heal():
        for path in paths:
            _OverlayHandler.faults.pop(path, None)

    inject.heal = heal
    yield inject
    heal()


def cache_entries(site):
    """[(url, sha256 in the key, sha256 of the cached bytes)] over every Cache API cache, for the
    files kept under their sha256 (Python's memory snapshot, keyed by the files it was made from,
    carries its own sha256: tests/e2e/test_start.py damages it)."""
    return site.page.evaluate("""async () => {
        const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
        const out = [];
        for (const name of await caches.keys()) {
            const cache = await caches.open(name);
            for (const request of await cache.keys()) {
                const url = new URL(request.url);
                if (url.pathname.endsWith('/python-snapshot')) continue;
                const body = await (await cache.match(request)).arrayBuffer();
                out.push([url.pathname, url.searchParams.get('sha256'),
                          hex(await crypto.subtle.digest('SHA-256', body))]);
            }
        }
        return out;
    }""")


def assert_no_poisoned_cache_entry(site, path_end):
    """Every cached file matches the hash it is stored under; returns the entries for path_end."""
    entries = cache_entries(site)
    assert entries, "the Cache API is empty: the runtime and default model should be in it"
    poisoned = [e for e in entries if e[1] != e[2]]
    assert not poisoned, f"cached bytes differ from their key's sha256: {poisoned}"
    return [e for e in entries if e[0].endswith(path_end)]


def select(site, name):
    site.page.select_option("[data-testid=model]", name)
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)


def assert_still_has_the_default_model(site, generate=True):
    assert site.state() == "ready", site.text("error")
    assert site.page.input_value("[data-testid=model]") == DEFAULT
    assert f"still using {DEFAULT}" in site.text("status"), site.text("status")
    if generate:
        assert_generates(site)


def assert_generates(site, prompt="Still works", n=6):
    site.generate(prompt, max_new_tokens=n, seed=2)
    assert site.state() == "ready" and site.text("status").startswith("Done"), site.text("status")
    assert 0 < int(site.text("token-count")) <= n
    assert site.page.is_hidden("[data-testid=error]")


def load_failure_then_retry(site, fault, model, message):
    """Pick `model` while its fault is on: a clear error, the default model kept, a Retry button
    and nothing poisoned in the cache; then heal the fault: Retry loads the model."""
    select(site, model)
    error = site.text("error")
    assert site.page.is_visible("[data-testid=error]")
    assert re.search(message, error), error
    assert site.page.is_visible("[data-testid=retry]")
    assert_no_poisoned_cache_entry(site, f"/models/{model}/model.safetensors")
    assert_still_has_the_default_model(site, generate=False)  # Generate would clear the error and Retry

    fault.heal()
    site.page.click("[data-testid=retry]")
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
    assert site.state() == "ready", site.text("error")
    assert site.text("status").startswith(f"Ready: {model}"), site.text("status")
    assert site.page.is_hidden("[data-testid=retry]")
    assert_generates(site)
    select(site, DEFAULT)
    assert site.state() == "ready"


# ---- network -------------------------------------------------------------------------------------

def test_connection_dropped_mid_model(fault_site, fault):
    fault("dropped", "model.safetensors", "drop")
    load_failure_then_retry(fault_site, fault, "dropped",
                            r"models/dropped/model\.safetensors: the (connection broke|download ended) "
                            r"after [\d,]+ of 395,176 bytes.*Retry")
    assert assert_no_poisoned_cache_entry(fault_site, "/models/dropped/model.safetensors"), \
        "the healed download is cached"


def test_404_for_one_shard(fault_site, fault):
    fault("sharded", SHARDS[1], "404")
    load_failure_then_retry(fault_site, fault, "sharded",
                            rf"models/sharded/{SHARDS[1]}: the server answered HTTP 404")


def test_hash_mismatch_against_the_manifest(fault_site, fault):
    fault("tampered", "model.safetensors", "tamper")
    load_failure_then_retry(fault_site, fault, "tampered",
                            r"models/tampered/model\.safetensors: the downloaded file does not match "
                            r"manifest\.json \(sha256 [0-9a-f]{12}…, expected [0-9a-f]{12}…\)")
    cached = assert_no_poisoned_cache_entry(fault_site, "/models/tampered/model.safetensors")
    assert len(cached) == 1, cached


def test_slow_server_progress_moves_and_cancel_restores_the_model(fault_site, fault):
    site = fault_site
    fault("slow", "model.safetensors", "slow")  # ~10 s for 395 kB
    site.page.select_option("[data-testid=model]", "slow")
    assert site.state() == "loading"
    assert site.page.is_visible("[data-testid=cancel]")
    seen = []
    deadline = time.monotonic() + 30
    while len(set(seen)) < 4 and time.monotonic() < deadline:
        seen.append(site.page.evaluate("document.querySelector('[data-testid=progress]').value"))
        time.sleep(0.3)
    assert len(set(seen)) >= 4 and seen == sorted(seen), f"progress did not keep moving: {seen}"
    assert re.fullmatch(r"[\d.]+ of [\d.]+ MB", site.page.text_content("#progress-text"))
    site.page.click("[data-testid=cancel]")
    site.wait_state("ready", "error", timeout_ms=10_000)
    assert site.text("status") == f"Loading cancelled; still using {DEFAULT}.", site.text("status")
    assert site.page.is_hidden("[data-testid=error]") and site.page.is_hidden("[data-testid=cancel]")
    assert not assert_no_poisoned_cache_entry(site, "/models/slow/model.safetensors")
    assert_still_has_the_default_model(site)


# ---- files -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_file_keeps_the_model_the_page_had(fault_site, kind):
    site = fault_site
    broken_file, message = BAD_FILES[kind]
    select(site, kind)
    error = site.text("error")
    assert re.search(message, error), error
    assert broken_file in error and not error.startswith("Python error"), error
    assert_still_has_the_default_model(site)


# ---- generation ------------------------------------------------------------------------------------

def test_empty_prompt_is_refused_and_the_page_stays_ready(fault_site):
    site = fault_site
    site.generate("", max_new_tokens=5)
    assert site.state() == "ready"
    assert site.text("error") == "the prompt is empty: type some text to continue"
    assert_generates(site)


def test_prompt_of_only_special_tokens(fault_site):
    site = fault_site
    site.generate("<|endoftext|><|endoftext|>", max_new_tokens=5, seed=1)
    assert site.text("status").startswith("Done"), site.text("error")
    assert site.last_run()["n_prompt"] == 2


UNICODE_PROMPTS = {
    "NUL": "a\0b\0",
    "RTL marks and Arabic": "\u200fمرحبا\u202e abc \u202c\u200e",
    "zero-width and BOM": "\ufeffa\u200bb\u200d",
    "emoji with modifiers": "\U0001F44D\U0001F3FD \U0001F469\u200d\U0001F4BB",
    "combining marks": "e\u0301\u0301 x\u0323\u0301",
    "noncharacters and private use": "\uffff\U0010FFFF\ue000",
}


def test_unicode_edge_cases(fault_site):
    site = fault_site
    for name, prompt in {**UNICODE_PROMPTS, "lone surrogates": None}.items():
        # A lone surrogate cannot cross from Python to the page as text: made in the page itself.
        site.page.evaluate("p => { document.querySelector('[data-testid=prompt]').value = "
                           "p ?? 'x\\ud800y\\udfff'; }", prompt)
        site.page.click("[data-testid=generate]")
        site.wait_state("ready", "error")
        assert site.text("status").startswith("Done"), f"{name}: {site.text('error')}"
        echo = site.page.evaluate("document.getElementById('prompt-echo').textContent === "
                                  "document.querySelector('[data-testid=prompt]').value")
        assert echo, f"{name}: the prompt is not shown exactly"


def test_100k_character_prompt(fault_site, timings):
    """Over the limit (mixed text, ~90k tokens): a clear message, fast. Under it (~29k tokens of
    common words): generates; the page stays responsive meanwhile, and a Stop clicked during the
    prefill lands between two blocks of the prompt: nothing is generated after it."""
    site = fault_site
    line = "The quick brown fox jumps over the lazy dog. Émile a dit : « bonjour » 日本語 🙂\n"
    over = (line * 2000)[:100_000]
    under = ("the the and of to in " * 5_000)[:100_000]
    site.fill(max_new_tokens=5)

    started = time.monotonic()
    site.page.evaluate("p => { document.querySelector('[data-testid=prompt]').value = p; }", over)
    site.page.click("[data-testid=generate]")
    site.wait_state("ready", timeout_ms=120_000)
    refused = time.monotonic() - started
    assert re.fullmatch(r"the prompt has more than 65536 tokens \(tokenizing stopped at \d+\); the limit is 65536", site.text("error")), \
        site.text("error")

    started = time.monotonic()
    site.page.evaluate("p => { document.querySelector('[data-testid=prompt]').value = p; }", under)
    site.page.click("[data-testid=generate]")
    responsive = []
    while site.state() == "generating" and len(responsive) < 5:
        asked = time.monotonic()
        site.page.evaluate("() => document.querySelector('[data-testid=status]').textContent")
        responsive.append(time.monotonic() - asked)
        time.sleep(0.2)
    stop_clicked = site.stop()
    clicked_at = time.monotonic()
    site.wait_state("ready", timeout_ms=300_000)
    total = time.monotonic() - started
    run = site.last_run()
    assert site.text("status").startswith("Done"), site.text("error")
    assert run["n_prompt"] < 65536 and run["n_generated"] <= 5
    settled = time.monotonic() - clicked_at
    if stop_clicked:
        assert run["reason"] in ("stopped", "eos", "length") and run["tokens_after_stop"] in (None, 0, 1)
        assert settled < 10, f"Stop took {settled:.1f} s to land during a long prompt"
    assert max(responsive) < 2.0, f"the page did not answer while the worker was busy: {responsive}"
    timings["100k-character prompt, page"] = (
        f"over the limit refused in {refused:.2f} s; {run['n_prompt']} tokens prefilled in "
        f"{run['prefill_ms'] / 1000:.1f} s, whole request {total:.1f} s, "
        f"Stop during prefill settled {settled:.1f} s after the click ({run['reason']}, "
        f"{run['n_generated']} tokens); "
        f"page answered in at most {max(responsive) * 1000:.0f} ms meanwhile")
    assert_generates(site)


def test_50_rapid_generate_stop_cycles(fault_site, timings):
    site = fault_site
    site.fill(max_new_tokens=100_000)

    def cycle(i):
        # Generate and Stop in one page step: the stop message is right behind the request.
        site.page.fill("[data-testid=prompt]", f"Cycle {i % 3}")
        site.page.evaluate("""() => {
            document.querySelector('[data-testid=generate]').click();
            document.querySelector('[data-testid=stop]').click();
        }""")
        site.wait_state("ready", timeout_ms=30_000)
        assert site.text("status").startswith("Done"), site.text("error")
        return site.last_run()

    for i in range(3):  # warm up: the prompts' states, the first sampler objects
        cycle(i)
    before = site.last_run()
    reasons = [cycle(i)["reason"] for i in range(50)]
    after = site.last_run()
    assert reasons.count("stopped") >= 45, reasons
    assert site.page.is_enabled("[data-testid=generate]") and site.page.is_disabled("[data-testid=stop]")
    heap_growth = after["wasm_heap_bytes"] - before["wasm_heap_bytes"]
    object_growth = after["python_objects"] - before["python_objects"]
    timings["50 Generate/Stop cycles"] = (
        f"WASM heap {before['wasm_heap_bytes']:,} -> {after['wasm_heap_bytes']:,} bytes; "
        f"Python objects (gc) {before['python_objects']:,} -> {after['python_objects']:,}")
    assert heap_growth == 0, timings["50 Generate/Stop cycles"]
    assert object_growth < 50, f"Python objects leak: {timings['50 Generate/Stop cycles']}"
    assert_generates(site)


def test_20000_token_generation_has_a_flat_wasm_heap(fault_site, timings):
    """Greedy decoding of the tiny model never picks end-of-text from this prompt (checked
    natively), so the run is exactly 20,000 tokens. Each token message carries the heap size."""
    site = fault_site
    site.page.evaluate("""() => {
        window.heapByToken = [];
        window.__mambaTest.workers[0].addEventListener('message', (e) => {
            if (e.data.type === 'token') window.heapByToken.push([e.data.n_generated, e.data.wasm_heap_bytes]);
        });
    }""")
    started = time.monotonic()
    site.generate("The ", wait=False, max_new_tokens=20_000, **GREEDY)
    site.wait_state("ready", "error", timeout_ms=600_000)  # a minute or more on a busy machine
    seconds = time.monotonic() - started
    run = site.last_run()
    assert run["reason"] == "length" and run["n_generated"] == 20_000, run
    heap = site.page.evaluate("window.heapByToken")
    after_1000 = next(h for n, h in heap if n >= 1000)
    growth = run["wasm_heap_bytes"] - after_1000
    timings["20,000 tokens, page"] = (
        f"{seconds:.1f} s ({run['tokens_per_second']:.0f} tokens/s); WASM heap {heap[0][1]:,} at token "
        f"{heap[0][0]}, {after_1000:,} at token 1,000, {run['wasm_heap_bytes']:,} at 20,000")
    # What may grow is the Session's list of generated ids: < 64 bytes a token (tests/test_bad_inputs.py).
    assert growth <= 64 * 20_000, timings["20,000 tokens, page"]


# ---- security ----------------------------------------------------------------------------------------

def test_markup_in_prompt_and_output_is_shown_as_text(fault_site):
    site = fault_site
    markup = '<img src=x onerror="window.injected=1"><script>window.injected=2</script><b>bold</b>'
    before = len(site.requests)
    site.generate(markup, max_new_tokens=40, seed=4)
    assert site.page.text_content("#prompt-echo") == markup
    elements = site.page.evaluate(
        "document.querySelectorAll('#prompt-echo *, [data-testid=output] :not(span.chunk), span.chunk *')"
        ".length")
    assert elements == 0, "markup became elements (the output holds only its own text chunks)"
    assert site.page.evaluate("window.injected") is None
    paths = [urllib.parse.urlsplit(u).path for u in site.requests[before:]]
    assert not any(p.endswith("/x") for p in paths), paths


def test_content_security_policy_is_enforced(fault_site, dist):
    html = (dist / "index.html").read_text()
    policy = re.search(r'http-equiv="Content-Security-Policy"\s+content="([^"]+)"', html).group(1)
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
    # The page's own origin, plus what a model URL the user types may be: any https origin, or a
    # server on this machine. Nothing else (no http: elsewhere, no data:, no wildcard).
    assert set(directives["connect-src"]) <= {"'self'", "https:", "http://localhost:*", "http://127.0.0.1:*"}
    assert directives["connect-src"][0] == "'self'"
    assert directives["default-src"] == ["'self'"] and directives["object-src"] == ["'none'"]
    assert "unsafe-inline" not in policy and "'unsafe-eval'" not in policy
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(" src=" in s for s in scripts), scripts
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"

    site = fault_site
    results = site.page.evaluate("""async () => {
        const violations = [];
        document.addEventListener('securitypolicyviolation', (e) => violations.push(e.effectiveDirective));
        const script = document.createElement('script');
        script.textContent = 'window.inlineRan = true';
        document.body.append(script);
        // Code run by the test itself is exempt from the policy; a timer's string runs later, as
        // the page's own code, so it is what shows whether eval-like code is refused.
        setTimeout('window.evalRan = true', 0);
        let fetchResult;
        try { await fetch('http://127.0.0.2:9/elsewhere'); fetchResult = 'fetched'; }
        catch (e) { fetchResult = e.name; }
        await new Promise((r) => setTimeout(r, 100));
        script.remove();
        return {inlineRan: window.inlineRan === true, evalRan: window.evalRan === true, fetchResult,
                violations};
    }""")
    assert results["inlineRan"] is False, results
    assert results["evalRan"] is False, results
    assert results["fetchResult"] == "TypeError", results
    assert {"script-src-elem", "script-src", "connect-src"} <= set(results["violations"]), results


# ---- a terminated worker (last: it reloads the shared page) -----------------------------------------

def test_terminated_worker_is_noticed_and_reload_recovers(fault_site):
    """Stands for the browser killing the worker (out of memory, a crash): the page's own Worker
    object is terminated mid-generation. No message or event reports that; the page learns it from
    the Web Lock the worker held, which the browser releases when the worker ends."""
    site = fault_site
    site.generate("Terminate me", wait=False, max_new_tokens=100_000, seed=3)
    site.page.wait_for_function("() => Number(document.querySelector('[data-testid=token-count]')"
                                ".textContent) > 0 || document.body.dataset.state !== 'generating'")
    site.page.evaluate("window.__mambaTest.workers[0].terminate()")
    site.wait_state("error", timeout_ms=10_000)
    assert "worker running Python stopped" in site.text("error"), site.text("error")
    assert site.page.is_disabled("[data-testid=generate]") and site.page.is_disabled("[data-testid=stop]")
    assert site.page.text_content("[data-testid=retry]") == "Reload"
    site.page.click("[data-testid=retry]")
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
    assert site.state() == "ready", site.text("error")
    assert_generates(site)
