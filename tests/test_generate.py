"""Generation end to end in CPython, on the committed placeholder checkpoint."""

from pathlib import Path

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm import InputError, Session, generate, generation

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "tiny-random"


@pytest.fixture(scope="module")
def model():
    return mamba_wasm.load_model(MODEL_DIR)


@pytest.fixture(scope="module")
def tokenizer():
    return mamba_wasm.Tokenizer.from_file(MODEL_DIR / "tokenizer.json")


def run(session, prompt, n, **sampling):
    session.start(prompt, n, **sampling)
    pieces = []
    while not session.done:
        pieces.append(session.advance(3))
    return "".join(pieces)


def test_greedy_generation_follows_the_models_argmax(model, tokenizer):
    session = Session(model, tokenizer)
    run(session, "The quick brown fox", 12, temperature=0)
    ids = tokenizer.encode("The quick brown fox")
    for token in session.generated_ids:
        logits = model.forward(ids)[-1][: tokenizer.vocab_size]
        assert token == int(np.argmax(logits))
        ids.append(token)


def test_streamed_pieces_equal_decoding_all_ids(model, tokenizer):
    session = Session(model, tokenizer)
    text = run(session, "Once upon a time", 40, temperature=1.0, seed=3)
    ids = [t for t in session.generated_ids if t != tokenizer.eos_token_id]
    assert session.n_generated > 0 and text == tokenizer.decode(ids)


def test_a_seed_reproduces_a_generation(model, tokenizer):
    texts = [run(Session(model, tokenizer), "Hello", 30, temperature=1.0, seed=s) for s in (5, 5, 6)]
    assert texts[0] == texts[1] != texts[2]
    assert "".join(generate(model, tokenizer, "Hello", 30, temperature=1.0, seed=5)) == texts[0]


def test_regenerate_reuses_the_state_after_the_prompt(model, tokenizer):
    session = Session(model, tokenizer)
    first = run(session, "Reuse me", 20, temperature=0.9, seed=1)
    assert not session.prompt_state_reused and session.n_prefilled == session.n_prompt > 0
    again = run(session, "Reuse me", 20, temperature=0.9, seed=1)
    assert session.prompt_state_reused and session.n_prefilled == 0 and again == first
    run(session, "Something else", 5, temperature=0)
    assert not session.prompt_state_reused and session.n_prefilled == session.n_prompt > 0


def test_stop_then_continue_equals_one_long_generation(model, tokenizer):
    whole = run(Session(model, tokenizer), "Continue", 24, temperature=0.8, seed=2)
    session = Session(model, tokenizer)
    part = run(session, "Continue", 10, temperature=0.8, seed=2)
    session.extend(14)
    while not session.done:
        part += session.advance(5)
    assert part == whole


@pytest.fixture
def eos_is_first_greedy_token(model, tokenizer, monkeypatch):
    """Make the first token greedy decoding of "Stop" produces play end-of-text; return it."""
    session = Session(model, tokenizer)
    run(session, "Stop", 3, temperature=0)
    first = session.generated_ids[0]
    monkeypatch.setattr(type(tokenizer), "eos_token_id", property(lambda self: first))
    return first


def test_end_of_text_stops_generation(model, tokenizer, eos_is_first_greedy_token):
    session = Session(model, tokenizer)
    assert run(session, "Stop", 10, temperature=0) == "" and session.done and session.n_generated == 1


@pytest.mark.parametrize("prompt,n,sampling,match", [
    ("", 5, {}, "empty"),
    ("hi", 0, {}, "max_new_tokens"),
    ("hi", 5, {"top_p": 0}, "top_p"),
])
def test_bad_requests_are_refused_and_the_session_stays_usable(model, tokenizer, prompt, n, sampling, match):
    session = Session(model, tokenizer)
    with pytest.raises(InputError, match=match):
        session.start(prompt, n, **sampling)
    assert run(session, "still works", 3, temperature=0) is not None and session.n_generated == 3


def test_prompt_longer_than_the_limit_is_refused(model, tokenizer, monkeypatch):
    monkeypatch.setattr(generation, "MAX_PROMPT_TOKENS", 10)
    with pytest.raises(InputError, match="limit is 10"):
        Session(model, tokenizer).start("word " * 50, 5)


def test_long_prompt_is_prefilled_in_blocks(model, tokenizer, monkeypatch):
    prompt = "a long prompt, " * 40
    expected = run(Session(model, tokenizer), prompt, 5, temperature=0)
    monkeypatch.setattr(generation, "PREFILL_BLOCK", 7)
    assert run(Session(model, tokenizer), prompt, 5, temperature=0) == expected


def test_end_of_text_can_be_ignored_for_an_exact_length(model, tokenizer, eos_is_first_greedy_token):
    session = Session(model, tokenizer)
    session.start("Stop", 10, stop_at_eos=False, temperature=0)
    while not session.done:
        session.advance(4)
    assert session.n_generated == 10 and session.generated_ids[0] == eos_is_first_greedy_token


def test_a_prompt_runs_block_by_block_and_can_be_abandoned(model, tokenizer, monkeypatch):
    monkeypatch.setattr(generation, "PREFILL_BLOCK", 8)
    prompt = "a prompt of many blocks, " * 10
    expected = run(Session(model, tokenizer), prompt, 6, temperature=0)

    session = Session(model, tokenizer)
    session.begin(prompt, 6, temperature=0)
    calls = 1
    while not session.prefill_step():
        assert session.done  # nothing can be generated before the whole prompt has run
        calls += 1
    n_slices = len(list(tokenizer.encode_steps(prompt)))
    # one call per tokenizer slice, then one per block (the first block in the call that finds
    # the tokenizer done)
    assert session.n_prompt == len(tokenizer.encode(prompt)) and calls == n_slices + -(-session.n_prompt // 8)

    session = Session(model, tokenizer)
    session.begin(prompt, 6, temperature=0)
    assert not session.prefill_step()  # abandoned after one block, as a Stop would
    assert run(session, prompt, 6, temperature=0) == expected and not session.prompt_state_reused


def test_a_huge_prompt_is_tokenized_in_many_bounded_steps_and_can_be_abandoned(model, tokenizer):
    """A million spaces is one word: tokenizing it in one call kept Stop from landing for seconds.
    Now every prefill_step is one bounded slice of tokenizing, so the worker can stop between two."""
    session = Session(model, tokenizer)
    session.begin(" " * 1_000_000, 4, temperature=0)
    steps = 0
    while session.n_prompt == 0 and not session.prefill_step():
        steps += 1
        if steps == 50:
            break  # abandoned, as a Stop would
    assert steps == 50 and session.done and session.n_prompt == 0
    assert session.start("still usable", 2, temperature=0) > 0 and isinstance(session.advance(2), str)


def test_session_state_is_named_in_init(model, tokenizer):
    """Every attribute exists from __init__ on; a run only changes values (STYLE rule 13)."""
    session = Session(model, tokenizer)
    names = set(vars(session))
    run(session, "Named state", 4, temperature=0)
    session.extend(2)
    session.advance(2)
    assert set(vars(session)) == names
