"""Bring your own model, in real headless Chromium: a checkpoint folder served locally (as a hub
repository's resolve/main/ URL would be) loaded by URL and by the file picker, single-file f32 and
sharded f16; saved in the Cache API across a reload and deleted; a model too large for the tab
refused before any weight is downloaded; Regenerate reusing the state after the prompt; Continue
after Stop giving the text of one uninterrupted generation.

The checkpoints are the default model's random weights (its tokenizer fits its vocabulary),
re-saved by the test with mamba_wasm's safetensors writer: as is, and as f16 in two
shards with model.safetensors.index.json.
"""

import json
import pathlib
import urllib.parse

import pytest

from checkpoint_files import f16_two_shards

ROOT = pathlib.Path(__file__).resolve().parents[2]

LONG = 100_000
MODEL = ROOT / "models" / "tiny-random"
SAMPLING = dict(temperature=1.0, top_k=0, top_p=1.0)


@pytest.fixture(scope="module")
def checkpoints():
    """{kind: {file name: bytes}}: "f32" single file, "f16" two shards plus the index."""
    config = json.loads((MODEL / "config.json").read_text())
    tokenizer = (MODEL / "tokenizer.json").read_bytes()
    return {
        "f32": {"config.json": (MODEL / "config.json").read_bytes(),
                "model.safetensors": (MODEL / "model.safetensors").read_bytes(),
                "tokenizer.json": tokenizer},
        "f16": {"config.json": json.dumps({**config, "dtype": "float16"}).encode(),
                **f16_two_shards((MODEL / "model.safetensors").read_bytes()), "tokenizer.json": tokenizer},
    }


def serve(mount, prefix, folder, files):
    """Mount {file: bytes} as prefix/folder/; returns the folder's URL."""
    return mount(prefix, {f"{folder}/{name}": data for name, data in files.items()}) + f"{folder}/"


def saved_list(site):
    return site.page.eval_on_selector_all(
        "[data-testid=cached-models] li[data-base]", "items => items.map(i => [i.dataset.base, i.textContent])")


def json_attribute(site, name):
    return json.loads(site.page.get_attribute("body", name) or "{}")


def wait_for_load(site, start):
    """Run start() (which begins a load), then wait until that load ended: ready or error."""
    site.page.evaluate("() => { delete document.body.dataset.modelSource; }")
    start()
    site.page.wait_for_function("() => document.body.dataset.modelSource !== undefined"
                                " || document.body.dataset.state === 'error'", timeout=120_000)


def weight_requests(site, base, since=0):
    """Requests for files of the checkpoint at base (from index `since` of the recorded ones)."""
    return [u for u in site.requests[since:] if u.startswith(base)]


def test_url_sharded_f16_saved_across_reload_then_deleted(new_site, mount, checkpoints, timings):
    files = checkpoints["f16"]
    base = serve(mount, "own-f16", "tiny-f16-sharded", files)
    site = new_site()
    seconds = site.open("?model=" + urllib.parse.quote(base, safe=":/"))
    assert site.state() == "ready", site.text("error")

    plan = json_attribute(site, "data-model-plan")
    assert plan["name"] == "tiny-f16-sharded" and not plan["saved"]
    assert plan["download_bytes"] == sum(len(b) for b in files.values())  # known before fetching
    assert sorted(f["name"] for f in plan["files"]) == sorted(files)
    info = site.text("model-info")
    assert "parameters" in info and "recurrent state" in info and "saved in this browser" in info, info
    source = json_attribute(site, "data-model-source")
    assert source["kind"] == "url" and source["saved"], source
    site.page.wait_for_selector("[data-testid=cached-models] li[data-base]")
    assert [b for b, _ in saved_list(site)] == [base]
    assert "tiny-f16-sharded" in saved_list(site)[0][1] and "kB" in saved_list(site)[0][1]
    timings["own model by URL (f16, 2 shards), cold"] = f"{seconds:.2f} s to ready ({site.phases()})"

    text = site.generate("Sharded", max_new_tokens=10, seed=2)
    assert site.text("status").startswith("Done") and text

    before = len(site.requests)
    seconds = site.open("?model=" + urllib.parse.quote(base, safe=":/"))
    assert site.state() == "ready", site.text("error")
    assert not weight_requests(site, base, before), "a saved model was fetched again"
    assert json_attribute(site, "data-model-plan")["saved"]
    assert json_attribute(site, "data-model-plan")["download_bytes"] == 0
    site.page.wait_for_selector("[data-testid=cached-models] li[data-base]")
    assert [b for b, _ in saved_list(site)] == [base]
    assert site.generate("Sharded", max_new_tokens=10, seed=2) == text, "the saved model differs"
    timings["own model by URL, saved (reload)"] = f"{seconds:.2f} s to ready, no model request"

    site.page.click("[data-testid=cached-models] li[data-base] [data-testid=cached-delete]")
    site.page.wait_for_selector("[data-testid=cached-models] li.saved-none")
    assert saved_list(site) == []
    left = site.page.evaluate("""async () => (await (await caches.open('mamba-wasm-models-v1')).keys())
        .map(r => r.url)""")
    assert not [u for u in left if u.startswith(base)], left


def test_too_large_model_is_refused_before_downloading(new_site, mount, checkpoints):
    config = {**json.loads(checkpoints["f32"]["config.json"]), "hidden_size": 4096,
              "intermediate_size": 8192, "num_hidden_layers": 64, "vocab_size": 50280}
    base = serve(mount, "own-huge", "huge", {**checkpoints["f32"], "config.json": json.dumps(config).encode()})
    site = new_site()
    gets = []
    site.context.on("request", lambda r: gets.append(r.url) if r.method == "GET" else None)
    site.open("?model=" + urllib.parse.quote(base, safe=":/"))
    assert site.state() == "error"
    message = site.text("error")
    assert "too large" in message and "GB" in message and "Nothing was downloaded" in message, message
    assert not [u for u in gets if u.endswith(".safetensors")], gets


def test_continue_after_stop_gives_the_uninterrupted_text(site):
    prompt, total = "Continue me", 300
    for seed in range(20):
        whole = site.generate(prompt, max_new_tokens=total, seed=seed, **SAMPLING)
        if site.last_run()["reason"] != "length":
            continue  # ended with end-of-text: the comparison needs the full length
        site.generate(prompt, wait=False, max_new_tokens=LONG, seed=seed, **SAMPLING)
        site.page.wait_for_function(
            "() => document.body.dataset.state !== 'generating'"
            " || Number(document.querySelector('[data-testid=token-count]').textContent) >= 5")
        stopped = site.stop()
        site.wait_state("ready")
        first = site.last_run()
        if not stopped or first["reason"] != "stopped" or first["n_generated"] >= total:
            continue  # ran past the comparison length before Stop landed: again
        assert site.page.is_enabled("[data-testid=continue]")
        site.fill(max_new_tokens=total - first["n_generated"])
        site.page.click("[data-testid=continue]")
        site.wait_state("ready", "error")
        run = site.last_run()
        assert run["continued"] and run["reason"] == "length", run
        assert run["n_generated"] == total
        assert site.text("output") == whole, "Stop then Continue differs from one generation"
        assert "Continue me" == site.page.text_content("#prompt-echo")
        return
    pytest.fail("no seed gave a full-length generation that Stop could interrupt")


def test_regenerate_reuses_the_state_after_the_prompt(site, timings):
    prompt = "To be, or not to be, that is the question. " * 40
    site.generate(prompt, max_new_tokens=5, seed=1)
    first = site.last_run()
    assert not first["prompt_state_reused"] and first["n_prompt"] > 100, first
    assert site.page.is_enabled("[data-testid=regenerate]")
    site.page.click("[data-testid=regenerate]")  # the prompt in the box, unchanged
    site.page.wait_for_function("() => document.body.dataset.state === 'ready'"
                                " && JSON.parse(document.body.dataset.lastRun || '{}').prompt_state_reused")
    again = site.last_run()
    assert again["prompt_state_reused"] and again["n_prompt"] == first["n_prompt"], again
    # the model ran the whole prompt once, and none of it again (a count, not a timing)
    assert first["n_prefilled"] == first["n_prompt"] and again["n_prefilled"] == 0, (first, again)
    assert again["state_nbytes"] > 0
    timings["prefill, then Regenerate"] = (f"{first['n_prompt']} prompt tokens: {first['prefill_ms']:.1f} ms, "
                                           f"then {again['prefill_ms']:.2f} ms (state of "
                                           f"{again['state_nbytes']:,} bytes reused)")


def test_status_says_the_state_was_reused(site):
    site.generate("Reuse", max_new_tokens=LONG, wait=False, seed=4)
    site.stop()
    site.wait_state("ready")
    site.fill(max_new_tokens=5)
    seen = site.page.evaluate("""() => new Promise(resolve => {
        const status = document.querySelector('[data-testid=status]');
        const observer = new MutationObserver(() => {
          if (status.textContent.includes('reused')) { observer.disconnect(); resolve(status.textContent); }
        });
        observer.observe(status, {childList: true, characterData: true, subtree: true});
        document.querySelector('[data-testid=regenerate]').click();
        setTimeout(() => resolve(status.textContent), 20000);
    })""")
    site.wait_state("ready")
    assert "state after the prompt reused (" in seen and "bytes)" in seen, seen


def test_load_by_file_picker_then_by_url(site, mount, checkpoints, tmp_path):
    for name, data in checkpoints["f32"].items():
        (tmp_path / name).write_bytes(data)
    before = len(site.requests)
    wait_for_load(site, lambda: site.page.set_input_files(
        "[data-testid=model-files]", [str(tmp_path / n) for n in checkpoints["f32"]]))
    assert site.state() == "ready", site.text("error")
    source = json_attribute(site, "data-model-source")
    assert source["kind"] == "files" and not source["saved"], source
    assert "not uploaded" in site.text("model-info")
    assert not [u for u in site.requests[before:] if u.endswith((".safetensors", "config.json"))]
    from_files = site.generate("Local", max_new_tokens=12, seed=9, **SAMPLING)

    base = serve(mount, "own-f32", "tiny-f32", checkpoints["f32"])
    site.page.fill("[data-testid=model-url]", base)
    wait_for_load(site, lambda: site.page.click("[data-testid=load-url]"))
    assert site.state() == "ready", site.text("error")
    assert json_attribute(site, "data-model-source")["kind"] == "url"
    assert weight_requests(site, base), "nothing was fetched from the URL"
    assert site.generate("Local", max_new_tokens=12, seed=9, **SAMPLING) == from_files


def test_storage_quota_too_small_keeps_the_model_in_memory(new_site, mount, checkpoints):
    base = serve(mount, "own-quota", "tiny-quota", checkpoints["f32"])
    site = new_site()
    origin = site.base_url.rstrip("/")
    cdp = site.context.new_cdp_session(site.page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": origin, "quotaSize": 100_000})
    site.open("?model=" + urllib.parse.quote(base, safe=":/"))
    assert site.state() == "ready", site.text("error")
    source = json_attribute(site, "data-model-source")
    assert source["kind"] == "url" and not source["saved"] and "quota" in source["note"], source
    assert "kept in memory" in site.text("model-info"), site.text("model-info")
    site.page.wait_for_selector("[data-testid=cached-models] li.saved-none")
    assert saved_list(site) == []
    assert site.generate("Quota", max_new_tokens=5, seed=1) is not None
    assert site.text("status").startswith("Done")
