"""Session(record_probabilities=True): each generated token's probability as sampled (after the
filters) and under the raw model, with 10 alternatives; recording never changes the text."""

from pathlib import Path

import pytest

import mamba_wasm
from mamba_wasm.token_probabilities import N_ALTERNATIVES

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "ROMEO."


@pytest.fixture(scope="module")
def shakespeare():
    return mamba_wasm.from_pretrained(ROOT / "models" / "shakespeare")


def run(model_and_tokenizer, record, n=24, **sampling):
    session = mamba_wasm.Session(*model_and_tokenizer, record_probabilities=record)
    session.start(PROMPT, n, **sampling)
    text = ""
    while not session.done:
        text += session.advance(3)
    return session, text


@pytest.mark.parametrize("sampling", [dict(temperature=0.8, seed=3), dict(temperature=0),
                                      dict(temperature=1.2, top_k=7, top_p=0.9, repetition_penalty=1.3, seed=5)])
def test_recording_changes_nothing_and_is_reproducible(shakespeare, sampling):
    plain, plain_text = run(shakespeare, False, **sampling)
    recorded, recorded_text = run(shakespeare, True, **sampling)
    again, _ = run(shakespeare, True, **sampling)
    assert recorded_text == plain_text and recorded.generated_ids == plain.generated_ids
    assert plain.token_probabilities == []
    assert [p.token for p in recorded.token_probabilities] == recorded.generated_ids
    assert recorded.token_probabilities == again.token_probabilities


def test_greedy_puts_everything_on_the_chosen_token(shakespeare):
    session, _ = run(shakespeare, True, temperature=0)
    for p in session.token_probabilities:
        assert p.sampled_probability == 1.0
        assert p.alternatives[0].token == p.token and p.alternatives[0].model_probability == max(
            a.model_probability for a in p.alternatives)
        assert all(a.sampled_probability == 0.0 for a in p.alternatives[1:])


def test_top_k_support_sums_to_one(shakespeare):
    session, _ = run(shakespeare, True, temperature=1.0, top_k=5, seed=2)
    for p in session.token_probabilities:
        kept = [a for a in p.alternatives if a.sampled_probability > 0]
        assert len(p.alternatives) == N_ALTERNATIVES and len(kept) == 5
        assert sum(a.sampled_probability for a in kept) == pytest.approx(1.0, abs=1e-9)
        assert p.token in [a.token for a in kept] and p.sampled_probability > 0
        # no penalty, temperature 1: within the top 5 the sampled odds are the model's odds
        top = kept[0]
        for a in kept[1:]:
            assert a.sampled_probability / top.sampled_probability == pytest.approx(
                a.model_probability / top.model_probability, rel=1e-4)


def test_top_p_keeps_the_smallest_set_reaching_p(shakespeare):
    top_p = 0.5
    session, _ = run(shakespeare, True, temperature=1.0, top_p=top_p, seed=4)
    for p in session.token_probabilities:
        kept = [a for a in p.alternatives if a.sampled_probability > 0]
        assert p.sampled_probability > 0
        if len(kept) < N_ALTERNATIVES:  # the whole support is listed
            mass = sum(a.model_probability for a in kept)
            assert sum(a.sampled_probability for a in kept) == pytest.approx(1.0, abs=1e-9)
            assert mass - kept[-1].model_probability < top_p + 1e-6  # without its last token, short of p
            assert all(a.sampled_probability == pytest.approx(a.model_probability / mass, rel=1e-4) for a in kept)


def test_temperature_sharpens_the_model_distribution(shakespeare):
    """Without filters, sampled ∝ model^(1/T): the odds of two tokens are the model's raised to 1/T."""
    temperature = 0.5
    session, _ = run(shakespeare, True, temperature=temperature, seed=8)
    for p in session.token_probabilities:
        first = p.alternatives[0]
        assert [a.token for a in p.alternatives] == [a.token for a in sorted(
            p.alternatives, key=lambda a: -a.model_probability)]
        for a in p.alternatives[1:4]:
            assert a.sampled_probability / first.sampled_probability == pytest.approx(
                (a.model_probability / first.model_probability) ** (1 / temperature), rel=1e-3)
        assert sum(a.sampled_probability for a in p.alternatives) <= 1 + 1e-9
