"""The inspection views in real headless Chromium, against the package run natively on the same
model, prompt, seed and settings: the token view (each token's probability and alternatives),
branching from a token, Score mode, the state view's heatmaps, and keyboard-only use.
"""

import csv as csv_module
import json
import os

import numpy as np
import pytest

import mamba_wasm
from conftest import ROOT

MODEL = ROOT / "models" / "shakespeare"
PROMPT = "ROMEO:\nBut soft, what light"
SETTINGS = {"max_new_tokens": 24, "temperature": 0.9, "top_k": 40, "top_p": 0.95, "seed": 5}
NATIVE_SETTINGS = {k: v for k, v in SETTINGS.items() if k != "max_new_tokens"}
TOLERANCE = 1e-4  # Pyodide's NumPy and the native one may round float32 sums differently


@pytest.fixture(scope="module")
def native():
    return mamba_wasm.load_model(MODEL), mamba_wasm.Tokenizer.from_file(MODEL / "tokenizer.json")


def native_session(native):
    model, tok = native
    session = mamba_wasm.Session(model, tok, record_probabilities=True, snapshot_every=16)
    session.start(PROMPT, SETTINGS["max_new_tokens"], **NATIVE_SETTINGS)
    text = ""
    while not session.done:
        text += session.advance(1)
    return session, text


def generate_with_tokens(site):
    if not site.page.is_checked("[data-testid=token-view]"):
        site.page.check("[data-testid=token-view]")
    return site.generate(PROMPT, **SETTINGS)


def page_tokens(site):
    return site.page.eval_on_selector_all("[data-testid=output] [data-testid=token]", """(els) => els.map((e) => ({
        id: Number(e.dataset.id), p: Number(e.dataset.p), p_model: Number(e.dataset.pModel), text: e.textContent}))""")


def popup_alternatives(site):
    return site.page.eval_on_selector_all("[data-testid=token-popup] [data-testid=alternative]", """(els) => els.map((e) => ({
        id: Number(e.dataset.tokenId), p: Number(e.dataset.p), p_model: Number(e.dataset.pModel)}))""")


def test_hovering_a_token_shows_the_packages_probabilities_and_alternatives(site, native):
    text = generate_with_tokens(site)
    session, native_text = native_session(native)
    assert text == native_text
    tokens = page_tokens(site)
    assert [t["id"] for t in tokens] == session.generated_ids
    assert "".join(t["text"] for t in tokens) == text
    for token, probabilities in zip(tokens, session.token_probabilities):
        assert token["p"] == pytest.approx(probabilities.sampled_probability, abs=TOLERANCE)
        assert token["p_model"] == pytest.approx(probabilities.model_probability, abs=TOLERANCE)
    for index in (0, 7):
        site.page.hover(f"[data-testid=output] [data-testid=token] >> nth={index}")
        site.page.wait_for_selector("[data-testid=token-popup]:not([hidden])")
        alternatives = popup_alternatives(site)
        expected = session.token_probabilities[index].alternatives
        assert [a["id"] for a in alternatives] == [a.token for a in expected]
        assert np.allclose([a["p"] for a in alternatives], [a.sampled_probability for a in expected], atol=TOLERANCE)
        assert np.allclose([a["p_model"] for a in alternatives], [a.model_probability for a in expected], atol=TOLERANCE)
        assert sum(a["p"] for a in alternatives) <= 1 + 1e-6
        assert sum(a["p_model"] for a in alternatives) <= 1 + 1e-6
    site.page.mouse.move(0, 0)


def test_colouring_tokens_marks_the_unlikely_ones_and_keeps_contrast(site):
    generate_with_tokens(site)
    site.page.check("[data-testid=colour-tokens]")
    colours = site.page.eval_on_selector_all("[data-testid=output] [data-testid=token]", """(els) => els.map((e) => ({
        p: Number(e.dataset.pModel), bg: getComputedStyle(e).backgroundColor, fg: getComputedStyle(e).color}))""")
    unlikely = [c for c in colours if c["p"] < 0.05]
    likely = [c for c in colours if c["p"] >= 0.8]
    assert unlikely and all(c["bg"] == "rgb(255, 179, 179)" for c in unlikely)
    assert all(c["bg"] == "rgba(0, 0, 0, 0)" for c in likely)
    for tinted in {(c["fg"], c["bg"]) for c in colours if c["bg"] != "rgba(0, 0, 0, 0)"}:
        assert contrast(*tinted) >= 4.5, tinted
    site.page.uncheck("[data-testid=colour-tokens]")


def contrast(fg, bg):
    def luminance(css):
        r, g, b = (int(float(v)) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
        lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_branching_at_a_token_gives_the_text_of_a_run_that_forced_it_and_back_returns(site, native):
    original = generate_with_tokens(site)
    position = 5
    site.page.hover(f"[data-testid=output] [data-testid=token] >> nth={position}")
    site.page.wait_for_selector("[data-testid=token-popup]:not([hidden])")
    drawn = page_tokens(site)[position]["id"]
    alternative = next(a for a in popup_alternatives(site) if a["id"] != drawn)
    site.page.click(f"[data-testid=token-popup] [data-testid=alternative][data-token-id='{alternative['id']}']")
    site.wait_state("generating", "ready")
    site.wait_state("ready", "error")
    branched = site.text("output")

    session, native_text = native_session(native)
    assert native_text == original
    forced = session.branch(position, alternative["id"])
    while not session.done:
        forced += session.advance(1)
    assert branched == forced != original
    assert [t["id"] for t in page_tokens(site)] == session.generated_ids
    sent = [t for t in site.page.evaluate("window.__mambaTest.traffic") if t["msg"]["type"] == "branch"]
    assert sent[-1]["msg"]["position"] == position and sent[-1]["msg"]["token"] == alternative["id"]
    started = [t["msg"] for t in site.page.evaluate("window.__mambaTest.traffic") if t["msg"]["type"] == "started"]
    assert started[-1]["prefill_ms"] == 0 and started[-1]["continued"]  # from a snapshot: the prompt is not run again

    site.page.click("[data-testid=branch-back]")
    site.wait_state("generating", "ready")
    site.wait_state("ready", "error")
    assert site.text("output") == original


def test_score_shows_the_native_nats_per_char(site, native):
    model, tok = native
    text = "To be, or not to be, that is the question."
    site.page.fill("[data-testid=prompt]", text)
    site.page.click("[data-testid=score]")
    site.page.wait_for_function("() => document.body.dataset.lastScore && document.body.dataset.state === 'ready'")
    last = json.loads(site.page.get_attribute("body", "data-last-score"))
    expected = mamba_wasm.score(model, tok, text)
    assert last["ids"] == expected.ids
    assert len(last["nll"]) == len(expected.ids) - 1
    assert np.allclose(last["nll"], expected.nll, atol=TOLERANCE)
    assert last["nats_per_char"] == pytest.approx(expected.nats_per_char, abs=TOLERANCE)
    assert last["perplexity"] == pytest.approx(expected.perplexity, rel=TOLERANCE)
    summary = site.text("score-summary")
    assert f"{expected.nats_per_char:.3f} nats/char" in summary and f"perplexity {expected.perplexity:.2f}" in summary
    scored = site.page.eval_on_selector_all("[data-testid=scored-token]", "(els) => els.map((e) => e.textContent)")
    assert "".join(scored) == text and len(scored) == len(expected.nll)


def test_the_state_view_draws_layers_by_tokens(site, native):
    model, tok = native
    generate_with_tokens(site)
    text = site.page.evaluate("() => document.querySelector('.transcript').textContent")
    site.page.click("[data-testid=state-view] summary")
    site.page.wait_for_function("() => Number(document.querySelector('[data-testid=state-delta]').dataset.tokens) > 0")
    n_tokens = len(tok.encode(text))
    n_layer = model.config.n_layer
    for testid in ("state-delta", "state-kept"):
        size = site.page.eval_on_selector(f"[data-testid={testid}]", """(c) => ({w: c.width, h: c.height,
            tokens: Number(c.dataset.tokens), layers: Number(c.dataset.layers)})""")
        assert (size["tokens"], size["layers"]) == (n_tokens, n_layer)
        assert size["w"] % n_tokens == 0 and size["h"] % n_layer == 0
        assert size["w"] // n_tokens > 1 and size["h"] // n_layer > 1
    box = site.page.locator("[data-testid=state-delta]").bounding_box()
    cell = box["width"] / n_tokens
    site.page.mouse.move(box["x"] + cell * 3.5, box["y"] + 2)
    assert site.page.get_attribute("[data-testid=state-token]", "data-column") == "3"
    assert json.dumps(tok.decode(tok.encode(text)[3:4]))[1:-1] in site.text("state-token")
    with site.page.expect_download() as png:
        site.page.click("[data-testid=state-png]")
    assert png.value.suggested_filename.endswith(".png")
    with site.page.expect_download() as csv:
        site.page.click("[data-testid=state-csv]")
    with open(csv.value.path(), encoding="utf-8", newline="") as file:
        rows = list(csv_module.reader(file))
    assert rows[0] == ["token", "id", "text", "layer", "delta_mean", "kept"] and len(rows) == 1 + n_tokens * n_layer
    assert "".join(row[2] for row in rows[1::n_layer]) == text
    site.page.click("[data-testid=state-view] summary")


def test_keyboard_only_opens_alternatives_moves_and_closes(site):
    generate_with_tokens(site)
    site.page.focus("[data-testid=output] [data-testid=token] >> nth=2")
    site.page.keyboard.press("Enter")
    assert site.page.is_visible("[data-testid=token-popup]")
    focused = site.page.evaluate("() => document.activeElement.dataset.testid")
    assert focused == "alternative"
    site.page.keyboard.press("ArrowDown")
    assert site.page.evaluate("() => document.activeElement.closest('li').previousElementSibling !== null")
    site.page.keyboard.press("Escape")
    assert site.page.is_hidden("[data-testid=token-popup]")
    assert site.page.evaluate("() => document.activeElement.dataset.index") == "2"
    site.page.keyboard.press("Tab")
    assert site.page.evaluate("() => document.activeElement.dataset.index") == "3"
    site.page.keyboard.press(" ")
    assert site.page.is_visible("[data-testid=token-popup]")
    site.page.keyboard.press("Escape")


def test_with_the_view_off_nothing_is_recorded_or_materialised(site):
    site.page.uncheck("[data-testid=token-view]")
    site.generate(PROMPT, **SETTINGS)
    assert site.page.locator("[data-testid=output] [data-testid=token]").count() == 0
    requests = [t["msg"] for t in site.page.evaluate("window.__mambaTest.traffic") if t["msg"]["type"] == "generate"]
    assert "inspect" not in requests[-1]
    answers = [t["msg"] for t in site.page.evaluate("window.__mambaTest.traffic")
               if t["msg"].get("id") == requests[-1]["id"] and t["msg"]["type"] in ("token", "done")]
    assert answers and all("tokens" not in m for m in answers)


VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.mark.parametrize("size", VIEWPORTS)
def test_the_views_fit_the_screen_and_screenshots(new_site, repo_root, size):
    """Each view at 1280x800 and 390x844: nothing wider than the screen, the popup inside it.
    Writes test-results/inspect-*.png; with MAMBA_WASM_UPDATE_SCREENSHOT=1 also docs/inspect-*.png."""
    width, height = VIEWPORTS[size]
    site = new_site(viewport=(width, height))
    site.open()
    site.page.evaluate("() => { document.querySelector('[data-testid=settings]').open = true; }")  # closed on a phone
    site.page.check("[data-testid=token-view]")
    site.page.check("[data-testid=colour-tokens]")
    site.generate(PROMPT, **{**SETTINGS, "max_new_tokens": 60})
    (repo_root / "test-results").mkdir(exist_ok=True)
    shots = []

    def shot(name, selector):
        site.page.locator(selector).scroll_into_view_if_needed()
        assert site.page.evaluate("() => document.documentElement.scrollWidth") <= width
        out = repo_root / "test-results" / f"inspect-{name}-{size}.png"
        site.page.screenshot(path=str(out))
        shots.append(out)

    chances = [t["p_model"] for t in page_tokens(site)[:30]]
    unsure = chances.index(min(chances[1:]))  # a token where the text could have gone elsewhere
    site.page.mouse.move(0, 0)  # the pointer left where Generate was may rest on a token: its popup would cover this one
    site.page.wait_for_selector("[data-testid=token-popup]", state="hidden")
    site.page.locator(f"[data-testid=output] [data-testid=token] >> nth={unsure}").scroll_into_view_if_needed()
    site.page.hover(f"[data-testid=output] [data-testid=token] >> nth={unsure}")
    site.page.wait_for_selector("[data-testid=token-popup]:not([hidden])")
    popup = site.page.locator("[data-testid=token-popup]").bounding_box()
    assert popup["x"] >= 0 and popup["x"] + popup["width"] <= width
    shot("tokens", "[data-testid=token-popup]")
    site.page.mouse.move(0, 0)
    site.page.click("[data-testid=state-view] summary")
    site.page.wait_for_function("() => Number(document.querySelector('[data-testid=state-delta]').dataset.tokens) > 0")
    site.page.locator("[data-testid=state-token]").scroll_into_view_if_needed()
    box = site.page.locator("[data-testid=state-delta]").bounding_box()
    site.page.mouse.move(box["x"] + 60, box["y"] + 4)
    assert site.page.get_attribute("[data-testid=state-token]", "data-column") == str(60 // 8)
    shot("state", "[data-testid=state-token]")
    site.page.fill("[data-testid=prompt]", "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer")
    site.page.click("[data-testid=score]")
    site.page.wait_for_selector("[data-testid=score-summary]:not([hidden])")
    site.wait_state("ready")
    shot("score", "[data-testid=score-summary]")
    for out in shots:
        assert out.stat().st_size > 10_000
        if os.environ.get("MAMBA_WASM_UPDATE_SCREENSHOT") == "1":
            (repo_root / "docs" / out.name).write_bytes(out.read_bytes())


def test_mamba2_tokens_branch_and_state_view(new_site):
    folder = ROOT / "models" / "shakespeare-mamba2"
    model, tok = mamba_wasm.load_model(folder), mamba_wasm.Tokenizer.from_file(folder / "tokenizer.json")
    site = new_site()
    site.open("?model=shakespeare-mamba2")
    assert site.state() == "ready", site.text("error")
    text = generate_with_tokens(site)
    session, native_text = native_session((model, tok))
    assert text == native_text
    tokens = page_tokens(site)
    assert [t["id"] for t in tokens] == session.generated_ids
    assert np.allclose([t["p_model"] for t in tokens], [p.model_probability for p in session.token_probabilities],
                       atol=TOLERANCE)
    site.page.hover("[data-testid=output] [data-testid=token] >> nth=3")
    alternative = next(a for a in popup_alternatives(site) if a["id"] != tokens[3]["id"])
    site.page.click(f"[data-testid=token-popup] [data-testid=alternative][data-token-id='{alternative['id']}']")
    site.wait_state("generating", "ready")
    site.wait_state("ready", "error")
    forced = session.branch(3, alternative["id"])
    while not session.done:
        forced += session.advance(1)
    assert site.text("output") == forced
    site.page.click("[data-testid=state-view] summary")
    site.page.wait_for_function("() => Number(document.querySelector('[data-testid=state-kept]').dataset.tokens) > 0")
    whole = site.page.evaluate("() => document.querySelector('.transcript').textContent")
    size = site.page.eval_on_selector("[data-testid=state-kept]", "(c) => [Number(c.dataset.tokens), Number(c.dataset.layers)]")
    assert size == [len(tok.encode(whole)), model.config.n_layer]


def test_clear_forgets_the_token_records(site):
    generate_with_tokens(site)
    assert page_tokens(site)
    site.page.click("[data-testid=clear]")
    site.page.uncheck("[data-testid=token-view]")
    site.page.check("[data-testid=token-view]")  # redraws from the records: there are none now
    assert page_tokens(site) == [] and site.text("output") == ""
    assert site.page.is_hidden("[data-testid=branch-back]")
