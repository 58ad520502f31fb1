"""A llama.cpp .gguf file on the page, in real headless Chromium: one file, model and tokenizer,
loaded by URL (the URL box and ?model=), by the file picker and by drag-and-drop; the plan shown
before the download (GGUF, the quantization, the download size, the float32 memory after
dequantisation) read from the file's header by HTTP Range requests, or from the download itself
when the server ignores Range; saved like any URL's model; a file too large for the tab refused
after its header only; broken files refused with a message naming them, the page still usable.

The files are the committed fixtures made by llama.cpp's converter (tests/fixtures/gguf/,
tests/make_gguf_fixtures.py), and files derived from them by gguf_files.py. The text the page
generates must equal the package's, run natively here on the same file with the same settings.
"""

import base64
import json
import pathlib
import urllib.parse

import pytest

import gguf_files
from conftest import _OverlayHandler
from native_runs import native_text
from mamba_wasm import from_pretrained
from mamba_wasm.gguf import read_gguf
from mamba_wasm.gguf_checkpoint import weight_bytes

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "gguf"
Q8 = "hf_tied_bias-Q8_0.gguf"
SAMPLING = dict(temperature=1.0, top_k=0, top_p=1.0)
HEAVY_PADDING = 16 * 2**20  # tensor data after the oversized header: what must not be downloaded

# The page's #model-info text each time it changes: the plan's text is replaced once the model loaded.
RECORD_MODEL_INFO_JS = """
window.__modelInfo = [];
document.addEventListener("DOMContentLoaded", () => {
  const info = document.getElementById("model-info");
  new MutationObserver(() => window.__modelInfo.push(info.textContent))
    .observe(info, {childList: true, characterData: true, subtree: true});
});
"""


def fixture(name):
    return (FIXTURES / name).read_bytes()


def serve_file(mount, prefix, name, data):
    return mount(prefix, {f"files/{name}": data}) + f"files/{name}"


def load(site, start):
    """Run start() (which begins a load: the page is loading once it returns), then wait until the
    load ended (ready, or an error shown: with a model loaded before, the page is ready again)."""
    start()
    site.page.wait_for_function("() => document.body.dataset.state !== 'loading'", timeout=120_000)


def load_url(site, url):
    site.page.fill("[data-testid=model-url]", url)
    load(site, lambda: site.page.click("[data-testid=load-url]"))


def json_attribute(site, name):
    return json.loads(site.page.get_attribute("body", name) or "{}")


def format_bytes(site, n):
    return site.page.evaluate("async (n) => (await import(new URL('format.js', location.href).href)).formatBytes(n)", n)


def plan_text(site):
    texts = [t for t in site.page.evaluate("window.__modelInfo") if "GGUF file" in t]
    return texts[-1] if texts else ""


def generate_like_native(site, path, prompt, seed, max_new_tokens=24):
    """Generate on the page, and assert the text equals the native package's."""
    text = site.generate(prompt, max_new_tokens=max_new_tokens, seed=seed, **SAMPLING)
    assert site.text("status").startswith("Done"), site.text("error")
    params = site.page.evaluate("window.__mambaTest.traffic.filter((t) => t.direction === 'to-worker'"
                                " && t.msg.type === 'generate').at(-1).msg.params")
    assert params["seed"] == seed
    assert text == native_text(path, prompt, params)
    return text


def recorded_site(new_site):
    site = new_site()
    site.context.add_init_script(RECORD_MODEL_INFO_JS)
    return site


@pytest.fixture(scope="module")
def gguf_site(browser, server):
    """A page that reached ready on the site's default model, recording #model-info's texts."""
    from conftest import Site
    site = Site(browser, server)
    site.context.add_init_script(RECORD_MODEL_INFO_JS)
    site.open()
    assert site.state() == "ready", site.text("error")
    yield site
    site.close()


def test_by_model_query_the_plan_from_byte_ranges_then_saved(new_site, mount, timings):
    data = fixture(Q8)
    url = serve_file(mount, "gguf-query", Q8, data)
    site = recorded_site(new_site)
    ranges = []
    site.context.on("request", lambda r: ranges.append(r.headers.get("range")) if r.url == url else None)
    seconds = site.open("?model=" + urllib.parse.quote(url, safe=":/"))
    assert site.state() == "ready", site.text("error")

    plan = json_attribute(site, "data-model-plan")
    model, _ = from_pretrained(str(FIXTURES / Q8))
    assert plan["format"] == "gguf" and plan["quantization"] == "Q8_0" and plan["name"] == Q8
    assert plan["download_bytes"] == len(data) and plan["files"] == [{"name": Q8, "size": len(data)}]
    assert plan["description"]["float32_bytes"] == 4 * model.n_params
    # the SIMD kernels ran, so the Q8_0 matrices stay as the file holds them: the plan says so
    assert json_attribute(site, "data-timings")["projections"] == "wasm-simd128"
    packed_bytes = weight_bytes(read_gguf(data, Q8), packed=True)
    assert plan["weight_bytes"] == packed_bytes < 4 * model.n_params
    text = plan_text(site)
    assert text.startswith(f"{Q8}: GGUF file, Q8_0, {format_bytes(site, len(data))} to download; "), text
    assert (f"{format_bytes(site, packed_bytes)} in memory (its Q8_0 matrices kept as they are; "
            f"{format_bytes(site, 4 * model.n_params)} as float32)") in text, text
    assert ranges[0] == "bytes=0-65535", ranges  # the header first, by a Range request
    source = json_attribute(site, "data-model-source")
    assert source["kind"] == "url" and source["base"] == url and source["saved"], source
    first = generate_like_native(site, FIXTURES / Q8, "The cat sat", seed=3)
    timings["GGUF by URL (Q8_0 fixture), cold"] = f"{seconds:.2f} s to ready ({site.phases()})"

    asked = len(ranges)
    site.open("?model=" + urllib.parse.quote(url, safe=":/"))
    assert site.state() == "ready", site.text("error")
    assert len(ranges) == asked, "a saved .gguf file was fetched again"
    plan = json_attribute(site, "data-model-plan")
    assert plan["saved"] and plan["download_bytes"] == 0 and plan["quantization"] == "Q8_0"
    assert "saved in this browser, nothing to download" in plan_text(site)
    site.page.wait_for_selector(f"[data-testid=cached-models] li[data-base='{url}']")
    assert generate_like_native(site, FIXTURES / Q8, "The cat sat", seed=3) == first


@pytest.mark.parametrize("name, kernels", [(Q8, False), ("original_layout-F16.gguf", True),
                                           ("original_layout-F16.gguf", False)])
def test_float32_matrices_the_plan_says_so_and_the_text_is_the_same(new_site, mount, name, kernels):
    """Every matrix is float32 in memory: an F16 file's, widened at load, with the SIMD kernels or
    without (the float32 kernel multiplies them); a Q8_0 file's with ?kernel=0 (NumPy multiplies:
    dequantized at load). The plan says float32, and the seeded text is still the native package's."""
    data = fixture(name)
    url = serve_file(mount, f"gguf-f32-{'kernels' if kernels else 'numpy'}", name, data)
    site = recorded_site(new_site)
    site.open(("?model=" if kernels else "?kernel=0&model=") + urllib.parse.quote(url, safe=":/"))
    assert site.state() == "ready", site.text("error")
    timings = json_attribute(site, "data-timings")
    if kernels:
        assert timings["projections"] == "wasm-simd128", timings
    else:
        assert timings["projections"] == "numpy" and "?kernel=0" in timings["projections_note"], timings
    model, _ = from_pretrained(str(FIXTURES / name))
    plan = json_attribute(site, "data-model-plan")
    assert plan["weight_bytes"] == weight_bytes(read_gguf(data, name), packed=kernels) == 4 * model.n_params
    text = plan_text(site)
    assert f"{format_bytes(site, len(data))} to download; " in text, text
    assert f"{format_bytes(site, 4 * model.n_params)} in memory as float32 after dequantisation" in text, text
    generate_like_native(site, FIXTURES / name, "The cat sat", seed=3)
    site.close()


def test_url_box_k_quant_mix(gguf_site, mount):
    name = "kquant-Q4_K_M.gguf"
    url = serve_file(mount, "gguf-kquant", name, fixture(name))
    load_url(gguf_site, url)
    assert gguf_site.state() == "ready" and not gguf_site.text("error"), gguf_site.text("error")
    assert json_attribute(gguf_site, "data-model-plan")["quantization"] == "Q4_K/Q6_K mix"
    assert f"{name}: GGUF file, Q4_K/Q6_K mix, " in plan_text(gguf_site)
    model, tokenizer = from_pretrained(str(FIXTURES / name))
    # a seed whose text is not over at once (a random 64-token model often ends at its first token)
    seed = next(s for s in range(100)
                if len(native_text(FIXTURES / name, "The cat", dict(max_new_tokens=24, seed=s, **SAMPLING))) >= 8)
    generate_like_native(gguf_site, FIXTURES / name, "The cat", seed=seed)


def test_file_picker_then_drag_and_drop(gguf_site, tmp_path):
    name = "mamba2_hf_untied-Q8_0.gguf"
    (tmp_path / name).write_bytes(fixture(name))
    load(gguf_site, lambda: gguf_site.page.set_input_files("[data-testid=model-files]", [str(tmp_path / name)]))
    assert gguf_site.state() == "ready", gguf_site.text("error")
    assert json_attribute(gguf_site, "data-model-source")["kind"] == "files"
    assert json_attribute(gguf_site, "data-model-plan")["description"]["architecture"] == "Mamba-2"
    assert f"{name}: GGUF file, Q8_0, " in plan_text(gguf_site)
    assert "to read from your files" in plan_text(gguf_site)
    generate_like_native(gguf_site, tmp_path / name, "Drop", seed=5)

    dropped = "hf_tied_bias-F32.gguf"
    load(gguf_site, lambda: gguf_site.page.evaluate("""([name, b64]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name));
        document.getElementById("own-model").dispatchEvent(
          new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [dropped, base64.b64encode(fixture(dropped)).decode()]))
    assert gguf_site.state() == "ready", gguf_site.text("error")
    assert json_attribute(gguf_site, "data-model-plan")["name"] == dropped
    assert f"{dropped}: GGUF file, F32, " in plan_text(gguf_site)
    generate_like_native(gguf_site, FIXTURES / dropped, "Drop", seed=6)


def assert_usable_after_error(site, mount, prefix):
    """After a refused file, another model loads."""
    assert site.state() in ("ready", "error")
    url = serve_file(mount, prefix, Q8, fixture(Q8))
    load_url(site, url)
    assert site.state() == "ready" and not site.text("error"), site.text("error")
    assert json_attribute(site, "data-model-source")["base"] == url
    assert site.generate("Again", max_new_tokens=4, seed=1) is not None


def test_too_large_refused_after_the_header_by_byte_ranges(gguf_site, mount):
    data = gguf_files.oversized(fixture(Q8), HEAVY_PADDING)
    url = serve_file(mount, "gguf-huge", "huge.gguf", data)
    asked = []
    gguf_site.context.on("request", lambda r: asked.append(r.headers.get("range")) if r.url == url else None)
    load_url(gguf_site, url)
    message = gguf_site.text("error")
    assert gguf_site.state() != "generating" and "huge.gguf is too large for a browser tab" in message, message
    assert "11.1 GB as float32" in message, message
    # a 64 KiB prefix, then (the long description) the next 192 KiB: never the 16 MiB of data
    assert asked == ["bytes=0-65535", "bytes=65536-262143"], asked
    assert_usable_after_error(gguf_site, mount, "gguf-after-huge")


def test_too_large_refused_mid_download_without_byte_ranges(gguf_site, mount):
    data = gguf_files.oversized(fixture(Q8), 2 * HEAVY_PADDING)
    url = serve_file(mount, "gguf-huge-stream", "huge.gguf", data)
    path = urllib.parse.urlparse(url).path
    _OverlayHandler.faults[path] = "no-range"
    try:
        load_url(gguf_site, url)
    finally:
        _OverlayHandler.faults.pop(path, None)
    message = gguf_site.text("error")
    assert "huge.gguf is too large for a browser tab" in message, message
    assert f" of {len(data):,} bytes." in message and "The download was stopped after " in message, message
    stopped_after = int(message.split("The download was stopped after ")[1].split(" ")[0].replace(",", ""))
    assert stopped_after < 2**20, message  # the header's 256 KiB, give or take a chunk
    assert _OverlayHandler.sent[path] < len(data) // 2, "the server sent the whole file"
    assert_usable_after_error(gguf_site, mount, "gguf-after-stream")


BROKEN = {
    "bad-magic.gguf": (gguf_files.with_magic, r"bad-magic\.gguf: not a GGUF file \(it starts with b'GGML'"),
    "truncated.gguf": (gguf_files.truncated, r"truncated\.gguf: tensor '.*': bytes .* run past its end .*truncated file\?"),
    "unknown-type.gguf": (gguf_files.with_tensor_type, r"unknown-type\.gguf: tensor 'token_embd\.weight' has unknown GGML type 99"),
    "llama.gguf": (gguf_files.with_architecture, r"llama\.gguf: architecture 'llama' is not supported"),
    "q4-1.gguf": (lambda data: gguf_files.with_tensor_type(data, 3),  # Q4_1: a GGML type not dequantized here
                  r"q4-1\.gguf: it holds tensors of type Q4_1, which the package does not dequantize"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_file_is_named_and_the_page_stays_usable(gguf_site, mount, name):
    import re
    make, pattern = BROKEN[name]
    url = serve_file(mount, f"gguf-broken-{name[:-5]}", name, make(fixture(Q8)))
    load_url(gguf_site, url)
    message = gguf_site.text("error")
    assert re.search(pattern, message), message
    assert "Python error" not in message, message
    assert_usable_after_error(gguf_site, mount, f"gguf-after-{name[:-5]}")
