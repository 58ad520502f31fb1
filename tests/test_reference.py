"""mamba_wasm/reference.py (the paper's notation, no speed tricks) against model.py's fast step,
on every golden fixture: the same logits token by token, and both against transformers' logits."""

import os

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm import reference

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "models")
# reference.py is the Mamba-1 step; the Mamba-2 fixtures (mamba2_*) are held against mamba2.py in test_mamba2.py
NAMES = sorted(name for name in os.listdir(FIXTURES)
               if os.path.isdir(os.path.join(FIXTURES, name)) and not name.startswith("mamba2_"))


def relative_error(ours, expected):
    return np.abs(ours - expected).max() / max(1.0, np.abs(expected).max())


@pytest.mark.parametrize("name", NAMES)
def test_reference_step_equals_the_fast_step_and_transformers(name):
    model = mamba_wasm.load_model(os.path.join(FIXTURES, name))
    expected = np.load(os.path.join(FIXTURES, name, "expected.npz"))
    fast_state, reference_state = model.new_state(), model.new_state()
    fast, slow = [], []
    for token in expected["prompt_ids"].tolist():
        fast.append(model.step(token, fast_state))
        slow.append(reference.step(model, token, reference_state))
    fast, slow = np.stack(fast), np.stack(slow)
    assert relative_error(fast, slow) <= 1e-5
    assert relative_error(fast_state.ssm, reference_state.ssm) <= 1e-5
    assert relative_error(fast_state.conv, reference_state.conv) <= 1e-5
    assert relative_error(slow, expected["logits"]) <= 1e-4
