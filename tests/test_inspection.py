"""The probe: Δ and kept state equal what transformers' mixers compute (a hook on MambaMixer's
x_proj, on Mamba2Mixer's in_proj, gives their time-step input), step after step equals one forward
and the state itself, and a probe never changes the logits or the state. Mamba-1 and Mamba-2."""

import math
from pathlib import Path

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm.inspection import Probe

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "models"
CASES = ["hf_tied_bias", "hf_untied_k3", "hf_untied_nobias"]
MAMBA2_CASES = ["mamba2_hf_nobias", "mamba2_hf_groups_bias", "mamba2_hf_untied"]


def ids_for(model, n=70):  # over SCAN_CHUNK: the state norm crosses a chunk of the scan
    return np.random.default_rng(0).integers(0, model.config.vocab_size, n).tolist()


def hf_delta_and_kept(folder, ids):
    """(l, n_layer, d_in) Δ and (l, n_layer) mean exp(Δ·A), from transformers' own tensors."""
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    model = transformers.MambaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    deltas, kept = [], []

    def hook(mixer):
        def on_x_proj(module, inputs, output):
            time_step = output[0, :, : mixer.time_step_rank]  # (l, r) as the mixer splits it
            delta = torch.nn.functional.softplus(time_step @ mixer.dt_proj.weight.T + mixer.dt_proj.bias)  # (l, d_in)
            A = -torch.exp(mixer.A_log.float())  # (d_in, n)
            deltas.append(delta.numpy())
            kept.append(torch.exp(delta[:, :, None] * A).mean(dim=(1, 2)).numpy())
        return on_x_proj

    for layer in model.backbone.layers:
        layer.mixer.x_proj.register_forward_hook(hook(layer.mixer))
    with torch.no_grad():
        model(torch.tensor([ids]))
    return np.stack(deltas, axis=1), np.stack(kept, axis=1)


@pytest.mark.parametrize("name", CASES)
def test_probe_equals_transformers_mixer(name):
    model = mamba_wasm.load_model(FIXTURES / name)
    ids = ids_for(model)
    probe = Probe(model.config.n_layer, per_channel=True)
    model.forward(ids, probe=probe)
    delta, kept = hf_delta_and_kept(FIXTURES / name, ids)
    assert probe.delta.shape == delta.shape == (len(ids), model.config.n_layer, model.config.d_inner)
    assert np.max(np.abs(probe.delta - delta)) <= 1e-5 * max(1.0, float(np.abs(delta).max()))
    assert np.max(np.abs(probe.delta_mean - delta.mean(axis=2))) <= 1e-5
    assert np.max(np.abs(probe.kept - kept)) <= 1e-5
    assert np.all((probe.kept > 0) & (probe.kept <= 1))


def hf2_delta_and_kept(folder, ids):
    """(l, n_layer, heads) Δ and (l, n_layer) mean exp(Δ·A), from transformers' Mamba2 tensors."""
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    model = transformers.Mamba2ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    deltas, kept = [], []

    def hook(mixer):
        def on_in_proj(module, inputs, output):
            dt = output[0, :, -mixer.num_heads :]  # (l, h): the last columns, as the mixer splits them
            delta = torch.nn.functional.softplus(dt + mixer.dt_bias)
            delta = torch.clamp(delta, *mixer.time_step_limit)
            A = -torch.exp(mixer.A_log.float())  # (h,)
            deltas.append(delta.numpy())
            kept.append(torch.exp(delta * A).mean(dim=1).numpy())
        return on_in_proj

    for layer in model.backbone.layers:
        layer.mixer.in_proj.register_forward_hook(hook(layer.mixer))
    with torch.no_grad():
        model(torch.tensor([ids]))
    return np.stack(deltas, axis=1), np.stack(kept, axis=1)


@pytest.mark.parametrize("name", MAMBA2_CASES)
def test_mamba2_probe_equals_transformers_mixer(name):
    model = mamba_wasm.load_model(FIXTURES / name)
    ids = ids_for(model)
    probe = Probe(model.config.n_layer, per_channel=True)
    model.forward(ids, probe=probe)
    delta, kept = hf2_delta_and_kept(FIXTURES / name, ids)
    assert probe.delta.shape == delta.shape == (len(ids), model.config.n_layer, model.config.n_heads)
    assert np.max(np.abs(probe.delta - delta)) <= 1e-5 * max(1.0, float(np.abs(delta).max()))
    assert np.max(np.abs(probe.kept - kept)) <= 1e-5


@pytest.mark.parametrize("name", CASES + MAMBA2_CASES)
def test_step_after_step_equals_forward_and_the_state(name):
    model = mamba_wasm.load_model(FIXTURES / name)
    ids = ids_for(model)
    whole = Probe(model.config.n_layer)
    model.forward(ids, probe=whole)
    stepped, state, norms = Probe(model.config.n_layer), model.new_state(), []
    model.prefill(ids[:5], state, probe=stepped)
    norms += [[math.nan] * model.config.n_layer] * 5
    for token in ids[5:]:
        model.step(token, state, probe=stepped)
        norms.append([float(np.linalg.norm(h)) for h in state.ssm])  # the state itself, per layer
    assert stepped.n_tokens == whole.n_tokens == len(ids)
    for name_ in ("delta_mean", "kept", "state_norm"):
        assert np.max(np.abs(getattr(stepped, name_) - getattr(whole, name_))) <= 2e-5, name_
    assert np.allclose(stepped.state_norm[5:], np.array(norms[5:]), rtol=1e-5)


def test_a_probe_changes_nothing():
    model = mamba_wasm.load_model(FIXTURES / "hf_tied_bias")
    ids = ids_for(model, 20)
    plain_state, probed_state = model.new_state(), model.new_state()
    assert np.array_equal(model.forward(ids, plain_state), model.forward(ids, probed_state, probe=Probe(2)))
    assert np.array_equal(model.step(3, plain_state), model.step(3, probed_state, probe=Probe(2)))
    assert np.array_equal(plain_state.ssm, probed_state.ssm) and np.array_equal(plain_state.conv, probed_state.conv)
    with pytest.raises(AttributeError, match="per_channel=True"):
        Probe(2).delta
