"""A Mamba-2 checkpoint in the page, in real headless Chromium: loaded by URL and by the file
picker like a Mamba-1 one, shown as "Mamba-2" with the parameter count and state size Python
computes for it, streaming text, and Regenerate reusing the state after the prompt.

The checkpoint is written by the test with transformers' Mamba2ForCausalLM(...).save_pretrained
(random weights, f32, the HF layout), with the default model's tokenizer: both have a vocabulary of
512.
"""

import json
import pathlib
import urllib.parse

import pytest

from mamba_wasm.config import Mamba2Config, config_from_json

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "models" / "tiny-random" / "tokenizer.json"
FILES = ("config.json", "model.safetensors", "tokenizer.json")
LOAD_TIMEOUT_MS = 240_000  # Pyodide's start, then the model, on a loaded machine
RUN_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """{file name: bytes} of a tiny random Mamba-2 (2 groups of 4 heads of 16 channels, d_state 16)."""
    import torch  # the reference side (requirements-test.txt): imported only where a test needs it
    from transformers import Mamba2Config as HFMamba2Config, Mamba2ForCausalLM

    assert json.loads(TOKENIZER.read_text())["model"]["type"] == "BPE"
    torch.manual_seed(0)
    hf = HFMamba2Config(vocab_size=512, hidden_size=64, num_hidden_layers=2, expand=2, head_dim=16, num_heads=8,
                        n_groups=2, state_size=16, conv_kernel=4, chunk_size=32, bos_token_id=0, eos_token_id=0,
                        pad_token_id=1, tie_word_embeddings=False)
    folder = tmp_path_factory.mktemp("mamba2-checkpoint")
    Mamba2ForCausalLM(hf).eval().save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes(TOKENIZER.read_bytes())
    return {name: (folder / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def expected(checkpoint):
    """What Python says the page must show: the config as mamba_wasm reads it."""
    config = config_from_json(checkpoint["config.json"])
    assert isinstance(config, Mamba2Config) and config.n_groups == 2 and config.vocab_size == 512
    return config


def json_attribute(site, name):
    return json.loads(site.page.get_attribute("body", name) or "{}")


def assert_shows_mamba2(site, config, kind):
    assert site.state() == "ready", site.text("error")
    source = json_attribute(site, "data-model-source")
    assert source["kind"] == kind, source
    plan = json_attribute(site, "data-model-plan")["description"]
    assert plan["architecture"] == "Mamba-2", plan
    assert plan["n_params"] == config.n_params() and plan["state_nbytes"] == config.state_nbytes(), plan
    info = site.text("model-info")
    assert info.startswith(f"Mamba-2, {config.n_params():,} parameters") and "recurrent state" in info, info


def wait_for_load(site, start):
    """Run start() (which begins a load), then wait until that load ended: ready or error."""
    site.page.evaluate("() => { delete document.body.dataset.modelSource; }")
    start()
    site.page.wait_for_function("() => document.body.dataset.modelSource !== undefined"
                                " || document.body.dataset.state === 'error'", timeout=LOAD_TIMEOUT_MS)


def test_by_url_streams_and_regenerate_reuses_the_state(new_site, mount, checkpoint, expected):
    base = mount("mamba2-url", {f"tiny-mamba2/{name}": data for name, data in checkpoint.items()}) + "tiny-mamba2/"
    site = new_site()
    site.page.goto(site.base_url + "?model=" + urllib.parse.quote(base, safe=":/"))
    site.wait_state("ready", "error", timeout_ms=LOAD_TIMEOUT_MS)
    assert_shows_mamba2(site, expected, "url")
    assert json_attribute(site, "data-model-plan")["download_bytes"] == sum(len(b) for b in checkpoint.values())

    # streams: tokens are in the page while the generation still runs
    # seed 20: this random model samples no end-of-text token in its first 1,500 tokens (seed 3 ended at 21)
    site.generate("Streaming", wait=False, max_new_tokens=100_000, seed=20)
    site.page.wait_for_function(
        "() => document.body.dataset.state === 'generating'"
        " && Number(document.querySelector('[data-testid=token-count]').textContent) >= 5"
        " && document.querySelector('[data-testid=output]').textContent.length > 0", timeout=RUN_TIMEOUT_MS)
    assert site.stop(), "the generation ended before Stop"
    site.wait_state("ready", timeout_ms=RUN_TIMEOUT_MS)
    assert site.last_run()["reason"] == "stopped" and site.text("output"), site.last_run()

    prompt = "To be, or not to be, that is the question. " * 20
    site.generate(prompt, wait=False, max_new_tokens=5, seed=1)
    site.wait_state("ready", "error", timeout_ms=RUN_TIMEOUT_MS)
    first = site.last_run()
    assert not first["prompt_state_reused"] and first["n_prompt"] > 100, first
    assert first["state_nbytes"] == expected.state_nbytes(), first
    site.page.click("[data-testid=regenerate]")
    site.page.wait_for_function("() => document.body.dataset.state === 'ready'"
                                " && JSON.parse(document.body.dataset.lastRun || '{}').prompt_state_reused",
                                timeout=RUN_TIMEOUT_MS)
    again = site.last_run()
    assert again["n_prompt"] == first["n_prompt"] and again["n_generated"] == 5, again
    assert again["state_nbytes"] == expected.state_nbytes(), again
    # the model ran the whole prompt once, and none of it again (a count, not a timing)
    assert first["n_prefilled"] == first["n_prompt"] and again["n_prefilled"] == 0, (first, again)


def test_by_file_picker_then_by_url_the_same_text(new_site, mount, checkpoint, expected, tmp_path):
    for name, data in checkpoint.items():
        (tmp_path / name).write_bytes(data)
    site = new_site()
    site.open()  # the site's default model first: a Mamba-2 replaces a Mamba-1
    assert site.state() == "ready", site.text("error")
    wait_for_load(site, lambda: site.page.set_input_files(
        "[data-testid=model-files]", [str(tmp_path / name) for name in FILES]))
    assert_shows_mamba2(site, expected, "files")
    site.generate("Local", wait=False, max_new_tokens=12, seed=9)
    site.wait_state("ready", "error", timeout_ms=RUN_TIMEOUT_MS)
    from_files = site.text("output")
    assert site.text("status").startswith("Done") and site.last_run()["n_generated"] > 0, site.last_run()

    base = mount("mamba2-files", {f"tiny-mamba2/{name}": data for name, data in checkpoint.items()}) + "tiny-mamba2/"
    site.page.fill("[data-testid=model-url]", base)
    wait_for_load(site, lambda: site.page.click("[data-testid=load-url]"))
    assert_shows_mamba2(site, expected, "url")
    site.generate("Local", wait=False, max_new_tokens=12, seed=9)
    site.wait_state("ready", "error", timeout_ms=RUN_TIMEOUT_MS)
    assert site.text("output") == from_files
