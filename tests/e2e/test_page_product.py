"""The page as a product, in real headless Chromium at desktop (1280x800) and phone (390x844) sizes:
each defect of issue 10 (errors in view, random seeds, the output following the text, what is
saved, strict settings, the Model box, loads while generating, loading phases, keyboard use,
Regenerate, the model card, contrast, URLs) and the conveniences (copy, download, share, clear,
settings kept, presets, explanations, sizes, time to first token, live region).
"""

import json
import re
import urllib.parse

import pytest

from conftest import READY_TIMEOUT_MS, ROOT

MODEL = ROOT / "models" / "tiny-random"
FILES = ("config.json", "model.safetensors", "tokenizer.json")
PHONE = (390, 844)
LONG = 100_000


def tiny_files():
    return {name: (MODEL / name).read_bytes() for name in FILES}


def serve_folder(mount, prefix, folder, files):
    return mount(prefix, {f"{folder}/{name}": data for name, data in files.items()}) + f"{folder}/"


def in_view(site, selector):
    return site.page.evaluate("""(sel) => {
        const r = document.querySelector(sel).getBoundingClientRect();
        return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
    }""", selector)


def tokens(site):
    return int(site.text("token-count"))


def wait_tokens(site, n):
    site.page.wait_for_function("(n) => Number(document.querySelector('[data-testid=token-count]').textContent)"
                                " >= n || document.body.dataset.state !== 'generating'", arg=n, timeout=120_000)


def load_url(site, url):
    site.page.fill("[data-testid=model-url]", url)
    site.page.click("[data-testid=load-url]")


def progress_phases(site):
    return site.page.evaluate("window.__mambaTest.traffic.filter((t) => t.msg.type === 'progress')"
                              ".map((t) => t.msg.phase)")


# ---- 1. errors where the user looks -----------------------------------------------------------------

@pytest.mark.parametrize("viewport", [(1280, 800), PHONE], ids=["desktop", "phone"])
def test_a_load_error_appears_in_view_as_an_alert(new_site, mount, viewport):
    base = serve_folder(mount, "inview", "present", tiny_files())
    site = new_site(viewport=viewport)
    site.open()
    site.page.locator("[data-testid=load-url]").scroll_into_view_if_needed()
    load_url(site, base.replace("/present/", "/absent/"))
    site.page.wait_for_selector("[data-testid=error]:not([hidden])")
    site.wait_state("ready")
    assert site.page.get_attribute("[data-testid=error]", "role") == "alert"
    assert "HTTP 404" in site.text("error"), site.text("error")
    assert in_view(site, "[data-testid=error]"), "the error is off-screen"
    assert in_view(site, "[data-testid=load-url]"), "the view jumped away from the control"


# ---- 2. a fresh seed per run, shown and reproducible ------------------------------------------------

def test_seed_is_random_per_run_shown_and_reproducible(site):
    site.page.fill("[data-testid=seed]", "")
    runs = []
    for _ in range(3):
        text = site.generate("ROMEO:", max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0)
        runs.append((site.text("last-seed"), text))
    seeds = [int(seed) for seed, _ in runs]
    assert len(set(seeds)) == 3, seeds
    assert len({text for _, text in runs}) > 1, "three random seeds gave the same text"
    site.page.click("[data-testid=regenerate]")
    site.wait_state("ready")
    assert int(site.text("last-seed")) not in seeds, "Regenerate reused the seed"
    again = site.generate("ROMEO:", max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=runs[1][0])
    assert again == runs[1][1], "typing the shown seed did not reproduce the text"
    site.page.fill("[data-testid=seed]", "")


# ---- 3. the output follows the text; phone layout --------------------------------------------------

def test_output_follows_the_end_unless_the_user_scrolls_up(site):
    site.generate("ROMEO:", wait=False, max_new_tokens=LONG, temperature=1.0, seed=3)
    box = ".transcript"
    at_end = "(s) => { const b = document.querySelector(s); return b.scrollHeight - b.clientHeight - b.scrollTop < 30; }"
    try:
        site.page.wait_for_function("(s) => { const b = document.querySelector(s);"
                                    " return b.scrollHeight > b.clientHeight + 300 || document.body.dataset.state !== 'generating'; }",
                                    arg=box, timeout=180_000)
        wait_tokens(site, tokens(site) + 60)  # hundreds of pixels more text, followed a frame at a time
        site.page.wait_for_function(at_end, arg=box, timeout=5_000)  # raises: the output did not follow the end
        site.page.hover(box)
        site.page.mouse.wheel(0, -5000)
        site.page.wait_for_function("(s) => document.querySelector(s).scrollTop === 0", arg=box)
        n = tokens(site)
        wait_tokens(site, n + 60)
        assert site.page.evaluate(f"document.querySelector('{box}').scrollTop") < 5, "scrolled back down by itself"
        site.page.mouse.wheel(0, 100_000)
        wait_tokens(site, tokens(site) + 60)
        site.page.wait_for_function(at_end, arg=box, timeout=5_000)  # following resumed at the end
    finally:  # the module's page is shared: leave it ready whatever happened
        site.stop()
        site.wait_state("ready")


def test_phone_shows_prompt_generate_stop_and_output_first(new_site):
    site = new_site(viewport=PHONE)
    site.open()
    for testid in ("prompt", "generate", "stop"):
        assert in_view(site, f"[data-testid={testid}]"), f"{testid} is not in the first screen"
    top = site.page.evaluate("document.querySelector('.transcript').getBoundingClientRect().top")
    assert top < PHONE[1] - 100, f"the output starts at {top}px, below the first screen"
    assert site.page.evaluate("document.querySelector('[data-testid=settings]').open") is False
    site.page.click("[data-testid=settings] summary")
    assert site.page.is_visible("[data-testid=temperature]")
    overflow = site.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0


def test_an_error_naming_a_long_url_fits_a_phone(new_site, server):
    site = new_site(viewport=PHONE)
    site.open()
    site.page.fill("[data-testid=model-url]", server + "models/afolderwhosenamehasnoplacetobreakatall/")
    site.page.click("[data-testid=load-url]")
    site.page.wait_for_selector("[data-testid=error]:not([hidden])")
    assert "afolderwhosenamehasnoplacetobreakatall" in site.text("error")
    box = site.page.eval_on_selector("[data-testid=error]", "(e) => [e.scrollWidth, e.clientWidth]")
    assert box[0] <= box[1], f"the message is {box[0]}px wide in a {box[1]}px box"


# ---- 4. only what loaded is saved ------------------------------------------------------------------

def test_a_folder_that_is_not_a_mamba_model_is_refused_before_download_and_not_saved(new_site, mount):
    gpt2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 2, "vocab_size": 512}
    base = serve_folder(mount, "gpt2", "gpt2-folder", {**tiny_files(), "config.json": json.dumps(gpt2).encode()})
    site = new_site()
    site.open()
    before = len(site.requests)
    load_url(site, base)
    site.page.wait_for_selector("[data-testid=error]:not([hidden])")
    site.wait_state("ready")
    assert "gpt2-folder/config.json" in site.text("error") and "layout" in site.text("error"), site.text("error")
    fetched = [u for u in site.requests[before:] if u.startswith(base)]
    assert fetched == [base + "config.json"], fetched
    cached = site.page.evaluate("async () => (await (await caches.open('mamba-wasm-models-v1')).keys()).map(r => r.url)")
    assert not [u for u in cached if u.startswith(base)], cached
    assert site.page.get_attribute("[data-testid=cached-models]", "data-count") == "0"


def test_a_saved_model_that_no_longer_loads_is_dropped(new_site, mount):
    base = serve_folder(mount, "goes-bad", "tiny", tiny_files())
    site = new_site()
    site.open()
    load_url(site, base)
    site.page.wait_for_selector("[data-testid=cached-models] li[data-base]", timeout=READY_TIMEOUT_MS)
    site.wait_state("ready")
    site.page.evaluate("""async (url) => {
        const cache = await caches.open('mamba-wasm-models-v1');
        await cache.put(url, new Response(new Uint8Array([1, 2, 3])));
    }""", base + "model.safetensors")
    site.open()
    site.page.wait_for_selector("[data-testid=cached-models] li[data-base]")
    site.page.click("[data-testid=cached-load]")
    site.page.wait_for_selector("[data-testid=error]:not([hidden])", timeout=READY_TIMEOUT_MS)
    site.wait_state("ready")
    assert "has been removed" in site.text("error"), site.text("error")
    site.page.wait_for_selector("[data-testid=cached-models] li.saved-none")


# ---- 5. strict settings ------------------------------------------------------------------------------

@pytest.mark.parametrize("testid,value", [("max-new-tokens", "1e3"), ("max-new-tokens", "2.7"), ("top-k", "3.9"),
                                          ("seed", "1.5"), ("top-p", "0"), ("temperature", "abc")])
def test_a_bad_setting_is_marked_and_never_sent(site, testid, value):
    site.fill(max_new_tokens=5, temperature=0.8, top_k=0, top_p=1, seed=1)
    site.page.fill(f"[data-testid={testid}]", value)
    try:
        assert_marked_and_not_sent(site, testid, value)
    finally:
        site.page.fill(f"[data-testid={testid}]", "1")
    assert site.page.get_attribute(f"[data-testid={testid}]", "aria-invalid") is None


def assert_marked_and_not_sent(site, testid, value):
    sent = len(site.traffic())
    site.page.fill("[data-testid=prompt]", "Valid prompt")
    site.page.click("[data-testid=generate]")
    assert site.state() == "ready"
    assert site.page.get_attribute(f"[data-testid={testid}]", "aria-invalid") == "true"
    message = site.page.text_content(f"#{testid}-error")
    assert f'"{value}"' in message or f"got {value})" in message, message
    assert not [t for t in site.traffic()[sent:] if t["type"] == "generate"], "an invalid setting was sent"
    assert site.page.evaluate("document.activeElement.dataset.testid") == testid


# ---- 6. the Model box tells the truth ----------------------------------------------------------------

def test_the_model_box_shows_a_url_models_real_name_and_source(new_site, mount):
    base = serve_folder(mount, "named", "shakespeare", tiny_files())  # named like the site's model
    site = new_site()
    site.open()
    load_url(site, base)
    site.page.wait_for_function("() => JSON.parse(document.body.dataset.modelSource || '{}').kind === 'url'",
                                timeout=READY_TIMEOUT_MS)
    shown = site.page.evaluate("(() => { const s = document.querySelector('[data-testid=model]');"
                               " return s.options[s.selectedIndex].textContent; })()")
    assert shown.startswith("shakespeare · 127.0.0.1"), shown
    info = site.text("model-info")
    assert "Demo" not in info and base in info and "98,240 parameters" in info, info


# ---- 7. a load while generating ----------------------------------------------------------------------

def test_load_url_while_generating_stops_then_loads(site, mount):
    base = serve_folder(mount, "midrun", "tiny-midrun", tiny_files())
    site.generate("ROMEO:", wait=False, max_new_tokens=LONG, seed=2)
    wait_tokens(site, 5)
    load_url(site, base)
    site.page.wait_for_function("() => JSON.parse(document.body.dataset.modelSource || '{}').base"
                                " && document.body.dataset.state === 'ready'", timeout=READY_TIMEOUT_MS)
    assert site.last_run()["reason"] == "stopped"
    assert json.loads(site.page.get_attribute("body", "data-model-source"))["base"] == base
    site.page.select_option("[data-testid=model]", "shakespeare")
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)


# ---- 8. each loading phase once ----------------------------------------------------------------------

def test_a_cold_url_load_goes_through_each_phase_once(new_site, mount):
    base = serve_folder(mount, "phases", "tiny-phases", tiny_files())
    site = new_site()
    site.page.goto(site.base_url + "?model=" + urllib.parse.quote(base, safe=":/"))
    statuses = site.page.evaluate_handle("""() => {
        const seen = [];
        new MutationObserver(() => seen.push(document.querySelector('[data-testid=status]').textContent))
            .observe(document.querySelector('[data-testid=status]'), {childList: true, characterData: true, subtree: true});
        return seen;
    }""")
    site.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
    assert site.state() == "ready", site.text("error")
    phases = progress_phases(site)
    runs = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    # "python" covers NumPy and the package too: they start with Python, from the snapshot or not (runtime.js)
    assert runs == ["download", "python", "plan", "fetch", "model"], runs
    texts = statuses.json_value()
    repeated = [t for i, t in enumerate(texts) if t in texts[:i]]
    assert not repeated, f"the status went back to an earlier message: {texts}"


# ---- 9. keyboard only --------------------------------------------------------------------------------

def test_keyboard_only_generate_escape_stops_and_focus_stays_useful(site):
    site.fill(max_new_tokens=LONG, seed=4)
    site.page.fill("[data-testid=prompt]", "ROMEO:")
    site.page.focus("[data-testid=prompt]")
    site.page.keyboard.press("Tab")  # to Generate
    assert site.page.evaluate("document.activeElement.dataset.testid") == "generate"
    site.page.keyboard.press("Enter")
    site.wait_state("generating")
    assert site.page.evaluate("document.activeElement.dataset.testid") == "stop"
    wait_tokens(site, 5)
    site.page.keyboard.press("Escape")
    site.wait_state("ready", timeout_ms=10_000)
    assert site.last_run()["reason"] == "stopped"
    assert site.page.evaluate("document.activeElement.dataset.testid") == "generate"


# ---- 10. Regenerate uses the prompt in the box --------------------------------------------------------

def test_regenerate_uses_the_edited_prompt(site):
    site.generate("First prompt", max_new_tokens=5, seed=1)
    site.page.fill("[data-testid=prompt]", "Edited prompt")
    site.page.click("[data-testid=regenerate]")
    site.wait_state("ready")
    assert site.page.text_content("#prompt-echo") == "Edited prompt"
    assert site.last_run()["prompt_state_reused"] is False
    site.page.click("[data-testid=regenerate]")
    site.wait_state("ready")
    assert site.last_run()["prompt_state_reused"] is True


# ---- 11. the model card ---------------------------------------------------------------------------------

def test_model_card_is_linked_and_served(site):
    site.page.select_option("[data-testid=model]", "shakespeare")
    site.wait_state("ready")
    href = site.page.get_attribute("[data-testid=model-card]", "href")
    assert site.page.is_visible("[data-testid=model-card]") and href
    text = site.page.evaluate("async (h) => { const r = await fetch(h); return [r.status, await r.text()]; }", href)
    assert text[0] == 200 and text[1].startswith("# shakespeare"), text[0]
    assert "MODEL_CARD.md" not in site.text("model-info")


# ---- also: contrast, shortcuts, URLs, connect-src in the worker -----------------------------------------

CONTRAST_JS = """([fgSel, bgSel]) => {
    const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const lum = (c) => { const [r, g, b] = rgb(c).map((v) => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const fg = getComputedStyle(document.querySelector(fgSel)).color;
    const bg = getComputedStyle(document.querySelector(bgSel)).backgroundColor;
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_is_at_least_4_5(site, scheme):
    site.page.emulate_media(color_scheme=scheme)
    try:
        button = site.page.evaluate(CONTRAST_JS, ["[data-testid=generate]", "[data-testid=generate]"])
        prompt = site.page.evaluate(CONTRAST_JS, ["#prompt-echo", ".transcript"])
        muted = site.page.evaluate(CONTRAST_JS, [".stats", "body"])
    finally:
        site.page.emulate_media(color_scheme="light")
    assert min(button, prompt, muted) >= 4.5, (button, prompt, muted)


def test_the_shortcut_hint_is_hidden_on_a_touch_phone(browser, server):
    context = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]}, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(server)
        page.wait_for_selector("[data-testid=shortcut]", state="attached")
        assert page.is_hidden("[data-testid=shortcut]")
    finally:
        context.close()


@pytest.mark.parametrize("url,expected", [("javascript:alert(1)", "not a web address"),
                                          ("ftp://example.org/model/", "not a web address"),
                                          ("http://192.168.1.20:8000/model/", "only over https")])
def test_only_allowed_urls_are_fetched(site, url, expected):
    before = len(site.requests)
    load_url(site, url)
    site.page.wait_for_selector("[data-testid=error]:not([hidden])")
    site.wait_state("ready")
    assert expected in site.text("error"), site.text("error")
    assert "config.json" not in site.text("error").split(":")[0]
    assert not [u for u in site.requests[before:] if "192.168" in u or u.startswith(("ftp:", "javascript:"))]


# ---- conveniences ------------------------------------------------------------------------------------------

def test_copy_download_share_and_clear(new_site):
    site = new_site()
    site.context.grant_permissions(["clipboard-read", "clipboard-write"])
    site.open()
    text = site.generate("ROMEO:", max_new_tokens=10, seed=9, temperature=0.7)
    site.page.click("[data-testid=copy]")
    site.page.wait_for_function("() => document.querySelector('[data-testid=tool-note]').textContent.startsWith('Copied')")
    assert site.page.evaluate("navigator.clipboard.readText()") == "ROMEO:" + text
    with site.page.expect_download() as download:
        site.page.click("[data-testid=download]")
    assert open(download.value.path(), encoding="utf-8").read() == "ROMEO:" + text
    site.page.click("[data-testid=share]")
    site.page.wait_for_function("() => document.querySelector('[data-testid=tool-note]').textContent.includes('link')")
    link = site.page.evaluate("navigator.clipboard.readText()")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert query["prompt"] == ["ROMEO:"] and query["temperature"] == ["0.7"] and query["seed"] == ["9"], link
    site.page.click("[data-testid=clear]")
    assert site.text("output") == "" and site.page.text_content("#prompt-echo") == ""

    other = new_site()
    other.page.goto(link)
    other.wait_state("ready", "error", timeout_ms=READY_TIMEOUT_MS)
    assert other.page.input_value("[data-testid=prompt]") == "ROMEO:"
    assert other.page.input_value("[data-testid=temperature]") == "0.7"


def test_settings_and_prompt_are_kept_across_reloads_and_presets_fill_them(new_site):
    site = new_site()
    site.open()
    site.page.fill("[data-testid=prompt]", "Kept prompt")
    site.page.fill("[data-testid=temperature]", "0.35")
    site.open()
    assert site.page.input_value("[data-testid=prompt]") == "Kept prompt"
    assert site.page.input_value("[data-testid=temperature]") == "0.35"
    assert site.page.input_value("[data-testid=preset]") == "Custom"
    greedy = next(o for o in site.page.eval_on_selector_all("[data-testid=preset] option", "os => os.map(o => o.value)")
                  if o.startswith("Greedy"))
    site.page.select_option("[data-testid=preset]", greedy)
    assert site.page.input_value("[data-testid=temperature]") == "0"
    for testid in ("max-new-tokens", "temperature", "top-k", "top-p", "repetition-penalty", "seed"):
        hint = site.page.evaluate(f"document.querySelector('[data-testid={testid}]').closest('label')"
                                  ".querySelector('small').textContent")
        assert len(hint) > 20, testid


def test_defaults_are_the_packages_and_sizes_show_before_loading(site):
    from mamba_wasm import SamplingParams
    defaults = SamplingParams()
    fresh = site.page.evaluate("async () => (await import(new URL('facts.js', location.href).href)).default")
    assert fresh["sampling_defaults"]["top_k"] == defaults.top_k
    options = site.page.eval_on_selector_all("[data-testid=model] option", "os => os.map(o => o.textContent)")
    site_models = [o for o in options if o.split(" · ")[0] in ("shakespeare", "tiny-random")]
    assert len(site_models) == 2 and all(re.search(r" · [\d.]+ (kB|MB)$", o) for o in site_models), options


def test_time_to_first_token_live_region_and_busy_state(site):
    site.generate("ROMEO:", wait=False, max_new_tokens=LONG, seed=5)
    wait_tokens(site, 3)
    assert site.page.get_attribute(".transcript", "aria-busy") == "true"
    site.stop()
    site.wait_state("ready")
    assert re.fullmatch(r"\d+\.\d\d s", site.text("time-to-first-token")), site.text("time-to-first-token")
    assert site.page.get_attribute(".transcript", "aria-busy") == "false"
    assert site.page.get_attribute("[data-testid=output]", "aria-live") == "polite"
    assert site.page.get_attribute(".transcript", "aria-live") is None, "the whole box would be re-read"
    assert site.page.get_attribute("[data-testid=progress]", "aria-label")
