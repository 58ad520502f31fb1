"""The NumPy model against itself: every way of running a sequence must give the same logits.

Parity with HF transformers is in test_parity.py (golden fixtures)."""

import numpy as np
import pytest

from mamba_wasm.errors import InputError
from mamba_wasm.model import SCAN_CHUNK, Mamba
from random_weights import random_weights, tiny_config

IDS = [int(i) for i in np.random.default_rng(1).integers(0, 40, SCAN_CHUNK + 37)]  # crosses a scan chunk


def rel_err(a, b):
    return np.abs(a - b).max() / max(1.0, np.abs(b).max())


@pytest.fixture(params=[dict(), dict(proj_bias=False, conv_bias=False, tie_embeddings=True), dict(d_conv=2, d_state=16)])
def model(request):
    config = tiny_config(**request.param)
    return Mamba(config, random_weights(config))


def test_step_by_step_equals_forward(model):
    state = model.new_state()
    stepped = np.stack([model.step(t, state) for t in IDS])
    full = model.forward(IDS)
    assert full.dtype == np.float32 and full.shape == (len(IDS), model.config.vocab_size)
    assert rel_err(stepped, full) <= 1e-5


def test_prefill_then_step_continues_the_sequence(model):
    full = model.forward(IDS)
    state = model.new_state()
    assert rel_err(model.prefill(IDS[:3], state), full[2]) <= 1e-5  # shorter than the conv window
    assert rel_err(model.prefill(IDS[3:70], state), full[69]) <= 1e-5
    assert rel_err(model.forward(IDS[70:90], state), full[70:90]) <= 1e-5
    assert rel_err(model.step(IDS[90], state), full[90]) <= 1e-5


def test_state_is_fixed_size_and_copies_are_independent(model):
    c = model.config
    state = model.new_state()
    assert state.conv.shape == (c.n_layer, c.d_inner, c.d_conv)
    assert state.ssm.shape == (c.n_layer, c.d_inner, c.d_state)
    assert state.nbytes == model.state_nbytes
    model.prefill(IDS[:20], state)
    saved = state.copy()
    first = model.step(IDS[20], state)
    model.step(IDS[21], state)
    assert state.nbytes == model.state_nbytes  # does not grow with the sequence
    np.testing.assert_array_equal(model.step(IDS[20], saved), first)


def test_bad_token_ids_are_refused(model):
    state = model.new_state()
    with pytest.raises(InputError, match="out of range"):
        model.step(model.config.vocab_size, state)
    with pytest.raises(InputError, match="out of range"):
        model.forward([1, -1])
    with pytest.raises(InputError, match="empty"):
        model.forward([])
    np.testing.assert_array_equal(state.ssm, 0)  # a refused call leaves the state untouched


def test_n_params_counts_a_tied_embedding_once():
    tied, untied = tiny_config(tie_embeddings=True), tiny_config(tie_embeddings=False)
    extra = untied.vocab_size * untied.d_model
    assert Mamba(untied, random_weights(untied)).n_params == Mamba(tied, random_weights(tied)).n_params + extra
