"""The page in real headless Chromium: Pyodide in a web worker, the default model, streaming text.

Most tests share one page that reached ready (the `site` fixture, one per module), since starting
Python takes seconds; tests that must start fresh (the corrupt model) open their own context.
"""

import json
import os
import re
import time
import urllib.parse

LONG = 100_000  # max new tokens for a generation the test stops itself


def start_long_generation(site, prompt, min_tokens=20, first_seed=0):
    """Start a generation the test will stop itself, once it has produced min_tokens. A model may
    end a generation early with its end-of-text token, so further seeds are tried."""
    for seed in range(first_seed, first_seed + 10):
        site.generate(prompt, wait=False, max_new_tokens=LONG, seed=seed)
        site.page.wait_for_function(
            "n => document.body.dataset.state !== 'generating'"
            " || Number(document.querySelector('[data-testid=token-count]').textContent) >= n",
            arg=min_tokens)
        if site.state() == "generating":
            return
    raise AssertionError(f"every seed ended before {min_tokens} tokens: {site.text('status')}")


def assert_finished(site, max_new_tokens):
    """Done by length or by end-of-text: the count is at most max_new_tokens."""
    assert site.state() == "ready"
    assert site.text("status").startswith("Done"), site.text("status")
    assert 0 < int(site.text("token-count")) <= max_new_tokens


def test_page_reaches_ready(site, dist):
    assert site.state() == "ready"
    assert site.page.is_enabled("[data-testid=generate]")
    assert site.page.is_disabled("[data-testid=stop]")
    assert site.page.is_hidden("[data-testid=error]")
    assert "parameters" in site.text("model-info")
    models = site.page.eval_on_selector_all("[data-testid=model] option", "os => os.map(o => o.value)")
    index = json.loads((dist / "models" / "index.json").read_text())
    assert models == [m["name"] for m in index["models"]]
    assert site.page.input_value("[data-testid=model]") == index["default"]


def test_text_streams(site):
    """The output grows over several observations while the state is generating."""
    for seed in range(10):
        site.generate("Once upon a time", wait=False, max_new_tokens=LONG, seed=seed)
        lengths = []
        while site.state() == "generating" and len(set(lengths)) < 4:
            lengths.append(len(site.text("output")))
            time.sleep(0.05)
        site.stop()
        site.wait_state("ready")
        assert lengths == sorted(lengths), f"output shrank while streaming: {lengths}"
        if len(set(lengths)) >= 4:
            break  # else the model ended with end-of-text before four observations: next seed
    assert len(set(lengths)) >= 4, f"output did not grow over several observations: {lengths}"
    assert int(site.text("token-count")) > 0
    assert float(site.text("tokens-per-second")) > 0


def test_stop_within_a_token_then_generate_again(site):
    for attempt in range(5):
        start_long_generation(site, "Stop me", min_tokens=20, first_seed=10 * attempt)
        rate = float(site.text("tokens-per-second"))
        clicked_at = time.monotonic()
        if site.stop():
            break
        site.wait_state("ready")  # ended with end-of-text just before the click: again
    site.wait_state("ready", timeout_ms=10_000)
    latency = time.monotonic() - clicked_at
    run = site.last_run()
    assert run["reason"] == "stopped" and "stopped" in site.text("status")
    # The worker checks for Stop before every token: none is generated once it has arrived.
    assert run["tokens_after_stop"] <= 1, run
    # So the page settles within a token's time plus a message round trip (slack for a loaded
    # machine: this is a guard against a batch of tokens, not a benchmark).
    assert latency < 3.0 + 3 / rate, f"Stop took {latency:.2f} s at {rate:.0f} tokens/s"
    stopped_count = site.text("token-count")
    assert int(stopped_count) == run["n_generated"] < LONG
    time.sleep(0.3)
    assert site.text("token-count") == stopped_count, "tokens kept coming after Stop"

    site.generate("And again", max_new_tokens=12, seed=3)
    assert_finished(site, 12)


def test_same_seed_same_text(site):
    params = dict(max_new_tokens=40, temperature=1.0, top_k=0, top_p=1.0, seed=1234)
    first = site.generate("Seeded", **params)
    second = site.generate("Seeded", **params)
    assert site.last_run()["prompt_state_reused"], "the same prompt again should reuse its state"
    other = site.generate("Seeded", **{**params, "seed": 4321})
    assert first == second
    assert first != other


def test_ctrl_enter_generates(site):
    site.page.fill("[data-testid=prompt]", "Keyboard")
    site.fill(max_new_tokens=8, seed=5)
    site.page.focus("[data-testid=prompt]")
    site.page.keyboard.press("Control+Enter")
    site.page.wait_for_function(
        "() => document.getElementById('prompt-echo').textContent === 'Keyboard'"
        " && document.body.dataset.state === 'ready'", timeout=60_000)
    assert_finished(site, 8)
    assert site.page.input_value("[data-testid=prompt]") == "Keyboard", "Enter leaked into the prompt"


def test_decode_speed(site, timings):
    site.generate("Speed", max_new_tokens=400, seed=11)
    assert_finished(site, 400)
    rate = float(site.text("tokens-per-second"))
    assert rate > 0
    run = site.last_run()
    assert run["n_generated"] == int(site.text("token-count")) and run["n_prompt"] >= 1
    timings["decode, default model"] = f"{rate:.1f} tokens/s over {site.text('token-count')} tokens"


def test_python_error_is_readable_and_the_page_stays_usable(site):
    site.generate("", max_new_tokens=5)
    assert site.state() == "ready"
    message = site.text("error")
    assert site.page.is_visible("[data-testid=error]")
    assert "prompt" in message and not message.startswith("Python error"), message
    site.generate("Fine again", max_new_tokens=5, seed=1)
    assert_finished(site, 5)
    assert site.page.is_hidden("[data-testid=error]")


def test_no_request_leaves_the_origin(site, server):
    site.generate("Offline", max_new_tokens=5)
    origin = urllib.parse.urlsplit(server)
    outside = []
    for url in site.requests:
        parts = urllib.parse.urlsplit(url[len("blob:"):] if url.startswith("blob:") else url)
        if parts.scheme == "data":
            continue
        if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
            outside.append(url)
    assert not outside, f"requests left the origin: {outside}"
    paths = {urllib.parse.urlsplit(u).path for u in site.requests}
    # The worker's own fetches are recorded too, so this covers the runtime and the model.
    assert any(p.endswith("pyodide.asm.wasm") for p in paths), sorted(paths)
    assert any(p.endswith("model.safetensors") for p in paths), sorted(paths)
    problems = [m for m in site.console if m.startswith("pageerror") or "Security Policy" in m]
    assert not problems, problems


def test_warm_visit_is_served_from_the_cache(site, timings):
    before = len(site.requests)
    seconds = site.open()
    assert site.state() == "ready"
    again = [urllib.parse.urlsplit(u).path for u in site.requests[before:]]
    assert not any(p.endswith((".wasm", ".safetensors", ".whl", ".zip")) for p in again), again
    timings["time to ready, warm (Cache API filled)"] = f"{seconds:.2f} s ({site.phases()})"


def test_progress_shows_bytes_of_total_while_downloading(new_site):
    site = new_site()
    site.page.add_init_script("""
        window.progressSeen = [];
        new MutationObserver(() => {
          const bar = document.querySelector('[data-testid=progress]');
          const text = document.getElementById('progress-text').textContent;
          if (text) window.progressSeen.push([bar.value, bar.max, text]);
        }).observe(document, {subtree: true, childList: true, characterData: true});
    """)
    site.open()
    assert site.state() == "ready"
    seen = site.page.evaluate("window.progressSeen")
    assert seen, "no progress was shown while downloading"
    value, maximum, text = seen[-1]
    assert value == maximum > 1_000_000, seen[-1]  # the runtime alone is megabytes
    assert re.fullmatch(r"[\d.]+ of [\d.]+ MB", text), text
    assert site.page.is_hidden("[data-testid=progress]"), "the bar stays up after loading"


def test_corrupt_model_shows_an_error_and_the_page_recovers(new_site, mount, dist):
    index = json.loads((dist / "models" / "index.json").read_text())
    default = next(m for m in index["models"] if m["name"] == index["default"])
    good = dist / "models" / default["path"]
    weights = (good / "model.safetensors").read_bytes()
    corrupt = {
        "models/index.json": json.dumps({**index, "models": index["models"] + [{
            "name": "corrupt", "path": "corrupt", "description": "cut in half",
            "files": ["config.json", "model.safetensors", "tokenizer.json"]}]}).encode(),
        "models/corrupt/config.json": (good / "config.json").read_bytes(),
        "models/corrupt/model.safetensors": weights[: len(weights) // 2],
        "models/corrupt/tokenizer.json": (good / "tokenizer.json").read_bytes(),
    }
    site = new_site(mount("fault-corrupt", corrupt))
    site.open("?model=corrupt")
    assert site.state() == "error"
    message = site.text("error")
    assert site.page.is_visible("[data-testid=error]")
    assert "model.safetensors" in message or "corrupt" in message, message
    assert not message.startswith("Python error"), f"a package error reads as a sentence: {message}"

    site.page.select_option("[data-testid=model]", index["default"])
    site.wait_state("ready", "error", timeout_ms=60_000)
    assert site.state() == "ready", site.text("error")
    assert site.page.is_hidden("[data-testid=error]")
    site.generate("Recovered", max_new_tokens=6)
    assert_finished(site, 6)


def test_phone_width_layout(site):
    site.page.set_viewport_size({"width": 390, "height": 844})
    try:
        overflow = site.page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at phone width"
        assert site.page.is_visible("[data-testid=generate]")
    finally:
        site.page.set_viewport_size({"width": 1280, "height": 800})


def test_screenshot_for_readme(site, repo_root):
    """Writes test-results/screenshot.png; with MAMBA_WASM_UPDATE_SCREENSHOT=1 also the README's
    docs/screenshot.png (kept opt-in so a test run leaves the work tree clean)."""
    site.page.fill("[data-testid=prompt]", "ROMEO:\nBut soft, what light through yonder window breaks?\n")
    site.generate(site.page.input_value("[data-testid=prompt]"), max_new_tokens=120, seed=7)
    assert_finished(site, 120)
    (repo_root / "test-results").mkdir(exist_ok=True)
    for name, viewport in (("screenshot.png", None), ("screenshot-phone.png", (390, 844))):
        out = repo_root / "test-results" / name
        if viewport:
            site.page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
        try:
            site.page.evaluate("window.scrollTo(0, 0)")
            site.page.screenshot(path=str(out))
        finally:
            site.page.set_viewport_size({"width": 1280, "height": 800})
        assert out.stat().st_size > 10_000
        if os.environ.get("MAMBA_WASM_UPDATE_SCREENSHOT") == "1":
            (repo_root / "docs" / name).write_bytes(out.read_bytes())
