"""Mamba-2: the NumPy model against itself, its config and checkpoint checks, and generation on it.

Parity with HF transformers' Mamba2ForCausalLM is in test_parity.py (the mamba2_* golden fixtures
written by tests/make_mamba2_fixtures.py). Here: every way of running a sequence gives the same
logits (step by step, sequence mode at several chunk lengths, prefill in pieces), the state has the
documented shapes and size, configs and checkpoints that are not a plain Mamba-2 are refused with
a message naming the problem, and generation runs on a Mamba-2 without knowing it is one.
"""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm import ConfigError, InputError, MambaState, Session, mamba2
from mamba_wasm.checkpoint import load_model_from_files, read_folder
from mamba_wasm.config import Mamba2Config, config_from_json
from mamba_wasm.errors import CheckpointError
from mamba_wasm.mamba2 import Mamba2
from random_weights import random_mamba2_weights, tiny_mamba2_config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "models"
MAMBA2_FIXTURES = sorted(p.name for p in FIXTURES.iterdir() if p.name.startswith("mamba2_"))
TINY_RANDOM_TOKENIZER = ROOT / "models" / "tiny-random" / "tokenizer.json"
SELF_TOLERANCE = 1e-5  # the same float32 sums in another order: measured <= 6e-7


def rel_err(a, b):
    return np.abs(a - b).max() / max(1.0, np.abs(b).max())


@pytest.fixture(scope="module", params=MAMBA2_FIXTURES)
def fixture(request):
    folder = FIXTURES / request.param
    return mamba_wasm.load_model(folder), np.load(folder / "expected.npz")


@pytest.fixture(params=[dict(), dict(n_groups=1, proj_bias=False, conv_bias=False, tie_embeddings=True),
                        dict(n_groups=8, d_conv=2, d_state=16, head_dim=4)])
def model(request):
    config = tiny_mamba2_config(**request.param)
    return Mamba2(config, random_mamba2_weights(config))


def test_fixtures_cover_every_option():
    configs = [mamba_wasm.load_model(FIXTURES / name).config for name in MAMBA2_FIXTURES]
    assert len(configs) >= 6 and all(isinstance(c, Mamba2Config) for c in configs)
    length = len(np.load(FIXTURES / MAMBA2_FIXTURES[0] / "expected.npz")["prompt_ids"])
    assert {c.n_groups == 1 for c in configs} == {True, False}
    assert any(c.n_groups == c.n_heads for c in configs)  # one head per group
    assert len({c.head_dim for c in configs}) >= 3 and len({c.d_state for c in configs}) >= 3
    assert {length % c.chunk_size == 0 for c in configs} == {True, False}
    assert any(c.chunk_size > length for c in configs)
    assert {c.proj_bias for c in configs} == {c.conv_bias for c in configs} == {True, False}
    assert {c.tie_embeddings for c in configs} == {True, False}
    assert {c.layout for c in configs} == {"hf", "original"}
    files = {name: set(os.listdir(FIXTURES / name)) for name in MAMBA2_FIXTURES}
    assert any("model.safetensors.index.json" in f for f in files.values())


@pytest.mark.parametrize("chunk", [1, 3, 7, 20, 64])
def test_sequence_mode_at_any_chunk_length_equals_step_by_step(fixture, chunk, monkeypatch):
    model, expected = fixture
    ids = expected["prompt_ids"].tolist()  # 20 tokens: chunks of 3 and 7 leave a partial last chunk
    state = model.new_state()
    steps = np.stack([model.step(t, state) for t in ids])
    monkeypatch.setattr(mamba2, "SSD_CHUNK", chunk)
    sequence_state = model.new_state()
    assert rel_err(model.forward(ids, sequence_state), steps) <= SELF_TOLERANCE
    np.testing.assert_allclose(sequence_state.ssm, state.ssm, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sequence_state.conv, state.conv, rtol=1e-6, atol=1e-6)


def test_step_by_step_equals_forward(model):
    ids = [int(i) for i in np.random.default_rng(1).integers(0, 40, mamba2.SSD_CHUNK + 37)]  # crosses a chunk
    state = model.new_state()
    steps = np.stack([model.step(t, state) for t in ids])
    assert rel_err(model.forward(ids), steps) <= SELF_TOLERANCE


def test_prefill_in_pieces_then_step_continues_the_sequence(model):
    ids = [int(i) for i in np.random.default_rng(2).integers(0, 40, 50)]
    whole = model.forward(ids)
    state = model.new_state()
    for start, end in ((0, 1), (1, 4), (4, 33), (33, 45)):  # pieces shorter than the conv width too
        last = model.prefill(ids[start:end], state)
        assert rel_err(last, whole[end - 1]) <= SELF_TOLERANCE
    for position in range(45, 50):
        assert rel_err(model.step(ids[position], state), whole[position]) <= SELF_TOLERANCE


def test_state_shapes_size_and_copies(model):
    c = model.config
    state = model.new_state()
    assert state.conv.shape == (c.n_layer, c.d_inner + 2 * c.n_groups * c.d_state, c.d_conv)
    assert state.ssm.shape == (c.n_layer, c.n_heads, c.head_dim, c.d_state)
    assert state.conv.dtype == state.ssm.dtype == np.float32
    assert state.nbytes == model.state_nbytes == c.state_nbytes()
    saved = state.copy()
    for token in range(5):
        model.step(token, state)
    assert state.nbytes == saved.nbytes and not saved.ssm.any() and state.ssm.any()
    again = saved.copy()
    assert np.array_equal(model.step(3, saved), model.step(3, again))


def test_dt_limit_clips_step_and_sequence_alike(model):
    clipped = Mamba2(replace(model.config, dt_limit=(0.05, 0.2)), model.weights)
    ids = [int(i) for i in np.random.default_rng(3).integers(0, 40, 30)]
    state = clipped.new_state()
    steps = np.stack([clipped.step(t, state) for t in ids])
    assert rel_err(clipped.forward(ids), steps) <= SELF_TOLERANCE
    assert rel_err(model.forward(ids), steps) > 1e-3  # the limit bites for these weights


def test_n_params_from_the_config_equals_the_loaded_count(fixture):
    model, _ = fixture
    assert model.n_params == model.config.n_params()


def test_config_members_the_page_reads(fixture):
    model, _ = fixture
    assert model.config.architecture == "Mamba-2"
    assert mamba_wasm.load_model(FIXTURES / "bf16").config.architecture == "Mamba-1"


def test_bad_token_ids_are_refused(model):
    state = model.new_state()
    for bad in (-1, 40):
        with pytest.raises(InputError, match=f"token id {bad} is out of range for a vocabulary of 40"):
            model.step(bad, state)
        with pytest.raises(InputError, match="out of range"):
            model.forward([1, bad])
    for bad, name in ((4.7, "float"), (True, "bool"), (np.float32(3), "float32"), ("7", "str")):
        with pytest.raises(InputError, match=rf"a token id must be an integer in \[0, 40\), got .* \({name}\)"):
            model.step(bad, state)
    for bad, match in (([1.5, 2.0], "got float64"), ([True], "got bool"), ("To be", "got str"), ([[1]], "flat")):
        with pytest.raises(InputError, match=match):
            model.forward(bad)
    with pytest.raises(InputError, match="empty"):
        model.prefill([], state)
    assert not state.ssm.any() and not state.conv.any()  # nothing ran


def test_numpy_integer_ids_are_accepted(model):
    a, b = model.new_state(), model.new_state()
    assert np.array_equal(model.step(np.int64(5), a), model.step(5, b))
    assert np.array_equal(model.forward(np.array([3, 1, 4], np.uint16)), model.forward([3, 1, 4]))


def mamba1_state():
    return mamba_wasm.load_model(ROOT / "models" / "tiny-random").new_state()


@pytest.mark.parametrize("make,match", [
    (lambda m: mamba1_state(), r"conv is float32 \(2, 128, 4\), expected float32"),
    (lambda m: Mamba2(tiny_mamba2_config(n_layer=3), m.weights).new_state(), r"conv is float32 \(3, "),
    (lambda m: Mamba2(replace(m.config, d_state=m.config.d_state * 2), m.weights).new_state(), "does not fit"),
    (lambda m: MambaState(conv=m.new_state().conv, ssm=m.new_state().ssm.astype(np.float64)),
     r"ssm is float64 \(.*\), expected float32"),
    (lambda m: (m.new_state().conv, m.new_state().ssm), "must be a MambaState from this model's new_state.., got tuple"),
])
def test_a_state_that_is_not_this_models_is_refused(model, make, match):
    """A Mamba-1's state, another Mamba-2's, a float64 one: InputError, before anything runs."""
    for call in (lambda s: model.step(1, s), lambda s: model.forward([1, 2], s), lambda s: model.prefill([1], s)):
        state = make(model)
        with pytest.raises(InputError, match=match):
            call(state)
        if isinstance(state, MambaState):
            assert not state.ssm.any() and not state.conv.any()  # nothing ran


def test_step_and_prefill_need_a_state(model):
    for call in (lambda: model.step(1, None), lambda: model.prefill([1], None)):
        with pytest.raises(InputError, match="got NoneType"):
            call()


def test_a_read_only_state_is_refused(model):
    state = model.new_state()
    state.conv.flags.writeable = False
    with pytest.raises(InputError, match=r"conv is float32 .* \(read-only\)"):
        model.step(1, state)
    assert not state.ssm.any()


# -- loading from bytes, as the web worker does ----------------------------------------------------


@pytest.mark.parametrize("name", ["mamba2_f16_sharded", "mamba2_original_layout"])
def test_load_model_from_files_reads_a_mamba2_from_bytes(name):
    """The worker's path: {file name: bytes (or a memoryview of the fetched buffer)}."""
    files = {file: memoryview(data) for file, data in read_folder(str(FIXTURES / name)).items()}
    model = load_model_from_files(files, f"https://example.org/{name}")
    expected = np.load(FIXTURES / name / "expected.npz")
    assert isinstance(model, Mamba2)
    assert rel_err(model.forward(expected["prompt_ids"].tolist()), expected["logits"]) <= 1e-4


def test_generation_does_not_know_the_architecture():
    """Session drives a Mamba-2 through the same calls as a Mamba-1: seeded text is reproducible,
    Regenerate reuses the state after the prompt, Continue equals one long generation."""
    tokenizer = mamba_wasm.Tokenizer.from_file(TINY_RANDOM_TOKENIZER)
    config = tiny_mamba2_config(vocab_size=tokenizer.vocab_size)
    model = Mamba2(config, random_mamba2_weights(config))

    def run(session, prompt, n, **sampling):
        session.start(prompt, n, stop_at_eos=False, **sampling)
        text = ""
        while not session.done:
            text += session.advance(3)
        return text

    session = Session(model, tokenizer)
    first = run(session, "Mamba two", 12, temperature=0.9, seed=4)
    assert session.n_generated == 12 and session.state_nbytes == config.state_nbytes()
    assert run(session, "Mamba two", 12, temperature=0.9, seed=4) == first and session.prompt_state_reused
    whole = run(Session(model, tokenizer), "Go on", 20, temperature=0.8, seed=5)
    part_session = Session(model, tokenizer)
    part = run(part_session, "Go on", 8, temperature=0.8, seed=5)
    part_session.extend(12)
    while not part_session.done:
        part += part_session.advance(5)
    assert part == whole


# -- configs that are not a plain Mamba-2 ----------------------------------------------------------


def hf_config(**changes):
    config = json.loads((FIXTURES / "mamba2_hf_untied" / "config.json").read_text())
    config.update(changes)
    return config


def original_config(**ssm_changes):
    config = json.loads((FIXTURES / "mamba2_original_layout" / "config.json").read_text())
    config["ssm_cfg"].update(ssm_changes)
    return config


@pytest.mark.parametrize("config, message", [
    (original_config(layer="Mamba3"), r"ssm_cfg.layer 'Mamba3' is not supported \(supported: 'Mamba1', 'Mamba2'\)"),
    ({**original_config(), "attn_layer_idx": [1]}, r"attn_layer_idx=\[1\] is not supported \(attention layers: a hybrid"),
    ({**original_config(), "d_intermediate": 64}, r"d_intermediate=64 is not supported \(MLP layers\)"),
    (original_config(D_has_hdim=True), r"ssm_cfg.D_has_hdim=True is not supported"),
    (original_config(d_ssm=40), r"ssm_cfg.d_ssm=40 is not supported \(a gated MLP beside the SSM\)"),
    (original_config(rmsnorm=False), r"ssm_cfg.rmsnorm=False is not supported"),
    (original_config(norm_before_gate=True), r"ssm_cfg.norm_before_gate=True is not supported"),
    (original_config(headdim=7), r"not a multiple of ssm_cfg.headdim \(7\)"),
    (hf_config(model_type="jamba"), r"model_type 'jamba' is not supported \(supported: 'mamba', 'mamba2'"),
    (hf_config(num_heads=6), r"num_heads \* head_dim \(6 \* 8\) must equal expand \* hidden_size \(64\)"),
    (hf_config(n_groups=3), r"the 8 heads do not split into 3 groups"),
    (hf_config(n_groups=0), r"n_groups must be positive"),
    (hf_config(hidden_act="gelu"), r"hidden_act='gelu' is not supported"),
    (hf_config(norm_before_gate=True), r"norm_before_gate=True is not supported"),
    (hf_config(time_step_limit=[0.0]), r"'time_step_limit' must hold two numbers"),
    (hf_config(time_step_limit=[0.5, 0.1]), r"0 <= low < high"),
    (hf_config(time_step_limit=[0.0, {"__float__": "NaN"}]), r"must hold two numbers"),
    (hf_config(head_dim="8"), r"key 'head_dim' must be int"),
])
def test_unsupported_configs_are_refused_by_name(config, message):
    with pytest.raises(ConfigError, match=message):
        config_from_json(json.dumps(config), "m/config.json")


def test_time_step_limit_in_either_json_spelling():
    for spelling in ([0.0, {"__float__": "Infinity"}], [0.0, float("inf")], [0.001, 0.1]):
        config = config_from_json(json.dumps(hf_config(time_step_limit=spelling)))
        assert config.dt_limit == (spelling[0], float("inf") if isinstance(spelling[1], dict) else spelling[1])


def test_missing_keys_take_transformers_defaults():
    """save_pretrained may leave out keys that hold Mamba2Config's defaults."""
    config = config_from_json(json.dumps({"model_type": "mamba2", "hidden_size": 4096, "num_hidden_layers": 2,
                                          "vocab_size": 100}))
    defaults = (config.n_heads, config.head_dim, config.d_state, config.n_groups, config.chunk_size)
    assert defaults == (128, 64, 128, 8, 256)
    assert config.tie_embeddings is False and config.dt_limit == (0.0, float("inf"))


def test_original_defaults_are_mamba_ssm_mamba2s():
    """state-spaces/mamba2-130m's config.json is just this."""
    config = config_from_json(json.dumps({"d_model": 768, "n_layer": 24, "vocab_size": 50277,
                                          "ssm_cfg": {"layer": "Mamba2"}, "pad_vocab_size_multiple": 16}))
    assert (config.d_state, config.head_dim, config.n_heads, config.n_groups, config.d_conv) == (128, 64, 24, 1, 4)
    assert config.vocab_size == 50288 and config.tie_embeddings and config.layout == "original"


# -- checkpoints that do not match their config ----------------------------------------------------


def fixture_files(name="mamba2_hf_untied"):
    return read_folder(str(FIXTURES / name))


def test_a_mamba1_config_over_mamba2_tensors_names_the_missing_tensor():
    files = fixture_files()
    files["config.json"] = (FIXTURES / "hf_untied_nobias" / "config.json").read_bytes()
    with pytest.raises(CheckpointError, match=r"missing tensor 'backbone.layers.0.mixer.x_proj.weight'"):
        load_model_from_files(files, "ckpt")


def test_a_mamba2_config_over_mamba1_tensors_names_the_missing_tensor():
    files = read_folder(str(FIXTURES / "hf_untied_nobias"))
    mamba1 = json.loads(files["config.json"])
    files["config.json"] = json.dumps(hf_config(
        hidden_size=mamba1["hidden_size"], expand=mamba1["expand"], num_heads=3, head_dim=8, use_conv_bias=False,
        vocab_size=mamba1["vocab_size"])).encode()
    with pytest.raises(CheckpointError, match=r"missing tensor 'backbone.layers.0.mixer.dt_bias'"):
        load_model_from_files(files, "ckpt")


def test_wrong_groups_give_a_shape_mismatch_naming_the_tensor():
    files = fixture_files()
    files["config.json"] = json.dumps(hf_config(n_groups=2)).encode()  # 8 heads: 2 groups is valid
    with pytest.raises(CheckpointError, match=r"tensor 'backbone.layers.0.mixer.in_proj.weight' has shape "
                                              r"\(168, 32\), expected \(200, 32\) from config.json"):
        load_model_from_files(files, "ckpt")


def test_a_bias_the_config_turns_off_is_an_unexpected_tensor():
    files = read_folder(str(FIXTURES / "mamba2_hf_groups_bias"))
    config = json.loads(files["config.json"])
    files["config.json"] = json.dumps({**config, "use_bias": False}).encode()
    with pytest.raises(CheckpointError, match=r"unexpected tensors 'backbone.layers.0.mixer.in_proj.bias'"):
        load_model_from_files(files, "ckpt")
