"""Our NumPy Mamba against HF transformers' MambaForCausalLM, through the golden fixtures.

tests/make_model_fixtures.py wrote each checkpoint and HF's outputs; this test needs neither
torch nor transformers. Tolerance: max|diff| / max(1, max|HF logits|) <= 1e-4 (both compute in
float32; the summation order differs). Greedy ids must be identical: each fixture's seed was
chosen so that no greedy step is a near-tie.
"""

import os

import numpy as np
import pytest

import mamba_wasm

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "models")
NAMES = sorted(name for name in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, name)))
TOLERANCE = 1e-4


def relative_error(ours, reference):
    return np.abs(ours - reference).max() / max(1.0, np.abs(reference).max())


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    folder = os.path.join(FIXTURES, request.param)
    return mamba_wasm.load_model(folder), np.load(os.path.join(folder, "expected.npz"))


def test_fixtures_cover_every_option():
    assert {"hf_tied_bias", "hf_untied_nobias", "hf_untied_k3", "original_layout", "f16_sharded", "bf16"} <= set(NAMES)


def test_forward_matches_transformers(case):
    model, expected = case
    logits = model.forward(expected["prompt_ids"].tolist())
    assert logits.dtype == np.float32 and logits.shape == expected["logits"].shape
    assert relative_error(logits, expected["logits"]) <= TOLERANCE


def test_step_matches_transformers(case):
    model, expected = case
    state = model.new_state()
    logits = np.stack([model.step(int(token), state) for token in expected["prompt_ids"]])
    assert logits.dtype == np.float32
    assert relative_error(logits, expected["logits"]) <= TOLERANCE


def test_greedy_ids_match_transformers(case):
    model, expected = case
    state = model.new_state()
    for token in expected["prompt_ids"][:-1]:
        model.step(int(token), state)
    token, generated = int(expected["prompt_ids"][-1]), []
    for _ in range(len(expected["greedy_ids"])):
        token = int(np.argmax(model.step(token, state)))
        generated.append(token)
    assert generated == expected["greedy_ids"].tolist()
