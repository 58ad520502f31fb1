"""The public API refuses misuse with an InputError that says what was expected (never a NumPy
error from inside the math, never a silent truncation), documents itself, and loads a folder
as transformers users expect."""

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm import InputError, MambaState
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "tiny-random"


@pytest.fixture(scope="module")
def pretrained():
    return mamba_wasm.from_pretrained(MODEL_DIR)


@pytest.fixture
def model(pretrained):
    return pretrained[0]


def other_state(model, **change):
    state = model.new_state()
    return MambaState(**{**vars(state), **change})


@pytest.mark.parametrize("token,match", [
    (42.7, r"a token id must be an integer in \[0, 512\), got 42.7 \(float\)"),
    (True, r"a token id must be an integer in \[0, 512\), got True \(bool\)"),
    ("7", r"a token id must be an integer .*got '7' \(str\)"),
    (512, "token id 512 is out of range for a vocabulary of 512"),
    (-1, "token id -1 is out of range"),
])
def test_step_refuses_a_token_that_is_not_an_id(model, token, match):
    state = model.new_state()
    with pytest.raises(InputError, match=match):
        model.step(token, state)
    assert not state.ssm.any()  # nothing ran


def test_step_accepts_numpy_integers(model):
    a, b = model.new_state(), model.new_state()
    assert np.array_equal(model.step(np.int32(5), a), model.step(5, b))


@pytest.mark.parametrize("make,match", [
    (lambda m: "state", "the state must be a MambaState from this model's new_state.., got str"),
    (lambda m: (m.new_state().conv, m.new_state().ssm), "got tuple"),
    (lambda m: other_state(m, conv=np.zeros((2, 128, 3), np.float32)),
     r"conv is float32 \(2, 128, 3\), expected float32 \(2, 128, 4\)"),
    (lambda m: other_state(m, ssm=np.zeros((3, 128, 16), np.float32)), r"ssm is float32 \(3, 128, 16\)"),
    (lambda m: other_state(m, ssm=np.zeros((2, 128, 16))), r"ssm is float64 \(2, 128, 16\), expected float32"),
    (lambda m: other_state(m, ssm=np.zeros((2, 128, 16), np.float32).tolist()), "ssm is a list"),
])
def test_a_state_that_is_not_this_models_is_refused(model, make, match):
    for call in (lambda s: model.step(1, s), lambda s: model.forward([1, 2], s), lambda s: model.prefill([1], s)):
        with pytest.raises(InputError, match=match):
            call(make(model))


def test_step_needs_a_state(model):
    with pytest.raises(InputError, match="got NoneType"):
        model.step(1, None)


def test_a_read_only_state_is_refused_before_anything_changes(model):
    state = model.new_state()
    state.ssm.flags.writeable = False
    with pytest.raises(InputError, match=r"ssm is float32 \(2, 128, 16\) \(read-only\)"):
        model.step(1, state)
    assert not state.conv.any()


@pytest.mark.parametrize("ids,match", [
    ("To be", "token ids must be a sequence of integers, got str 'To be': tokenizer.encode"),
    (b"To be", "got bytes"),
    ([1.5, 2.2], r"token ids must be integers in \[0, 512\), got float64 values such as 1.5"),
    ([1, 2.0], "got float64"),
    ([True, False], "got bool"),
    ([[1, 2]], r"flat sequence of integers, got an array of shape \(1, 2\)"),
    ([1, [2, 3]], "flat sequence of integers"),
    ([], "no tokens to run: the prompt is empty"),
    ([1, 600], "token id 600 is out of range for a vocabulary of 512"),
])
def test_forward_and_prefill_refuse_what_is_not_a_list_of_ids(model, ids, match):
    with pytest.raises(InputError, match=match):
        model.forward(ids)
    with pytest.raises(InputError, match=match):
        model.prefill(ids, model.new_state())


def test_forward_accepts_lists_tuples_and_integer_arrays_alike(model):
    ids = [3, 1, 4, 1, 5]
    expected = model.forward(ids)
    for same in (tuple(ids), np.array(ids, np.int32), np.array(ids, np.uint16)):
        assert np.array_equal(model.forward(same), expected)


def test_generate_refuses_token_ids_as_the_prompt(pretrained):
    model, tokenizer = pretrained
    with pytest.raises(InputError, match=r"the prompt must be text \(a str\), got list"):
        list(mamba_wasm.generate(model, tokenizer, [1, 2, 3]))


@pytest.mark.parametrize("sampling,match", [
    ({"temperature": float("inf")}, "temperature must be a finite number, got inf"),
    ({"top_p": float("nan")}, "top_p must be a finite number, got nan"),
    ({"repetition_penalty": float("inf")}, "repetition_penalty must be a finite number"),
])
def test_non_finite_sampling_parameters_are_refused(pretrained, sampling, match):
    model, tokenizer = pretrained
    with pytest.raises(InputError, match=match):
        list(mamba_wasm.generate(model, tokenizer, "hi", 3, **sampling))


@pytest.mark.parametrize("n", [0, -1, True, 2.5])
def test_max_new_tokens_and_extend_take_positive_integers(pretrained, n):
    model, tokenizer = pretrained
    session = mamba_wasm.Session(model, tokenizer)
    with pytest.raises(InputError, match="max_new_tokens must be a positive integer"):
        session.start("hi", n)
    session.start("hi", 2, temperature=0)
    with pytest.raises(InputError, match="more_tokens must be a positive integer"):
        session.extend(n)


def test_from_pretrained_gives_the_model_and_its_tokenizer(pretrained):
    model, tokenizer = pretrained
    assert isinstance(model, mamba_wasm.Mamba) and isinstance(tokenizer, mamba_wasm.Tokenizer)
    assert tokenizer.vocab_size <= model.config.vocab_size


def test_from_pretrained_names_a_missing_tokenizer(tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((MODEL_DIR / name).read_bytes())
    with pytest.raises(mamba_wasm.TokenizerError, match="tokenizer.json: cannot read"):
        mamba_wasm.from_pretrained(tmp_path)


def test_state_repr_is_shapes_and_bytes(model):
    assert repr(model.new_state()) == "MambaState(conv=(2, 128, 4), ssm=(2, 128, 16), 20,480 bytes)"


def test_public_names_are_documented():
    for name in mamba_wasm.__all__:
        assert getattr(mamba_wasm, name).__doc__, name
    for method in ("step", "forward", "prefill", "new_state"):
        assert getattr(mamba_wasm.Mamba, method).__doc__, method
    assert "advances it" in mamba_wasm.Mamba.forward.__doc__
    assert MambaState.copy.__doc__ and mamba_wasm.Session.start.__doc__
    assert "top_k" in mamba_wasm.generate.__doc__ and "Yield" in mamba_wasm.generate.__doc__
