"""Session.branch(t, x): the text of a fresh run with the same seed that forced x at token t,
from a state snapshot (replaying fewer than snapshot_every tokens, never the prompt)."""

from pathlib import Path

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm.sampling import Sampler, SamplingParams

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "ROMEO."
N = 30
EVERY = 4
SAMPLINGS = [dict(temperature=0.9, seed=7), dict(temperature=0),
             dict(temperature=1.1, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=3)]


@pytest.fixture(scope="module")
def shakespeare():
    return mamba_wasm.from_pretrained(ROOT / "models" / "shakespeare")


def forced_run(model, tokenizer, forced, **sampling):
    """The definition, written out: generate N tokens from a fresh state, drawing every token as
    usual, but putting `forced[t]` in place of the drawn token t."""
    vocab = tokenizer.vocab_size

    def masked(logits):
        logits = logits.copy()
        logits[vocab:] = -np.inf
        return logits

    prompt = tokenizer.encode(PROMPT)
    state = model.new_state()
    logits = masked(model.prefill(prompt, state))
    seen, sampler, ids = set(prompt), Sampler(SamplingParams(**sampling)), []
    while len(ids) < N:
        token = sampler(logits, seen)
        token = forced.get(len(ids), token)
        ids.append(token)
        if token == tokenizer.eos_token_id:
            break
        seen.add(token)
        logits = masked(model.step(token, state))
    return ids


def session_text(session):
    text = ""
    while not session.done:
        text += session.advance(5)
    return text


def other_token(session, t):
    """A token different from generated token t: its second most likely alternative."""
    return next(a.token for a in session.token_probabilities[t].alternatives if a.token != session.generated_ids[t])


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("t", [0, 3, 4, 9, N - 1])
def test_branch_equals_a_fresh_run_forcing_the_token(shakespeare, sampling, t):
    model, tokenizer = shakespeare
    session = mamba_wasm.Session(model, tokenizer, record_probabilities=True, snapshot_every=EVERY)
    session.start(PROMPT, N, **sampling)
    session_text(session)
    assert session.generated_ids == forced_run(model, tokenizer, {}, **sampling)  # the definition without forcing
    x = other_token(session, t)
    text = session.branch(t, x)
    text += session_text(session)
    expected = forced_run(model, tokenizer, {t: x}, **sampling)
    assert session.generated_ids == expected
    assert session.generated_ids[t] == x
    assert text == tokenizer.decode([i for i in expected if i != tokenizer.eos_token_id])
    assert [p.token for p in session.token_probabilities] == expected


def test_branch_of_a_branch_and_memory(shakespeare):
    model, tokenizer = shakespeare
    sampling = SAMPLINGS[2]
    session = mamba_wasm.Session(model, tokenizer, record_probabilities=True, snapshot_every=EVERY)
    session.start(PROMPT, N, **sampling)
    session_text(session)
    history = session._decoding.history
    assert len(history.snapshots) == -(-N // EVERY)
    assert history.nbytes == len(history.snapshots) * (model.state_nbytes + 4 * model.config.vocab_size)
    first = other_token(session, 20)
    session.branch(20, first)
    session_text(session)
    second = other_token(session, 6)
    session.branch(6, second)
    session_text(session)
    assert session.generated_ids == forced_run(model, tokenizer, {6: second}, **sampling)
    assert len(history.snapshots) == -(-N // EVERY)


def test_branch_replays_at_most_every_minus_one_tokens(shakespeare, monkeypatch):
    model, tokenizer = shakespeare
    session = mamba_wasm.Session(model, tokenizer, snapshot_every=8)
    session.start(PROMPT, N, temperature=0.8, seed=1)
    session_text(session)
    calls = {"step": 0, "prefill": 0, "forward": 0}
    for name in calls:
        real = getattr(model, name)
        monkeypatch.setattr(model, name, lambda *args, _real=real, _name=name: (
            calls.__setitem__(_name, calls[_name] + 1), _real(*args))[1])
    session.branch(23, 5)
    assert calls == {"step": 23 - 16 + 1, "prefill": 0, "forward": 0}  # 7 replayed + the branch token


def test_bad_branches_are_refused(shakespeare):
    model, tokenizer = shakespeare
    plain = mamba_wasm.Session(model, tokenizer)
    plain.start(PROMPT, 4, seed=1)
    plain.advance(4)
    with pytest.raises(mamba_wasm.InputError, match="snapshot_every"):
        plain.branch(0, 5)
    session = mamba_wasm.Session(model, tokenizer, snapshot_every=2)
    session.start(PROMPT, 4, seed=1)
    session.advance(4)
    with pytest.raises(mamba_wasm.InputError, match=r"in \[0, 4\)"):
        session.branch(4, 5)
    with pytest.raises(mamba_wasm.InputError, match="out of range"):
        session.branch(0, tokenizer.vocab_size)
    with pytest.raises(mamba_wasm.InputError, match="snapshot_every must be"):
        mamba_wasm.Session(model, tokenizer, snapshot_every=0)
