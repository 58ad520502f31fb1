"""plan.describe_config: what the page shows before a download agrees with the loaded model."""

import pathlib

import pytest

import mamba_wasm
from mamba_wasm.plan import describe_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = sorted(p for p in (ROOT / "tests" / "fixtures" / "models").iterdir() if p.is_dir()) + [
    ROOT / "models" / "shakespeare", ROOT / "models" / "tiny-random"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_description_matches_the_loaded_model(folder):
    description = describe_config((folder / "config.json").read_text(), f"{folder.name}/config.json")
    model = mamba_wasm.load_model(folder)
    assert description["architecture"] == ("Mamba-2" if folder.name.startswith("mamba2_") else "Mamba-1")
    assert description["n_params"] == model.n_params
    assert description["float32_bytes"] == 4 * model.n_params
    assert description["state_nbytes"] == model.state_nbytes == model.new_state().nbytes
    assert description["vocab_size"] == model.config.vocab_size


def test_a_config_of_another_architecture_is_refused_with_its_name():
    gpt2 = '{"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "vocab_size": 50257}'
    with pytest.raises(mamba_wasm.ConfigError, match="gpt2-folder/config.json"):
        describe_config(gpt2, "gpt2-folder/config.json")
