"""Sampling: greedy, seeding, and each filter against transformers' own logits processors."""

import numpy as np
import pytest

from mamba_wasm.errors import InputError
from mamba_wasm.sampling import Sampler, SamplingParams

LOGITS = np.random.default_rng(0).standard_normal(50).astype(np.float32) * 3


def test_temperature_zero_is_argmax():
    assert Sampler(SamplingParams(temperature=0)) (LOGITS) == int(np.argmax(LOGITS))


def test_same_seed_same_tokens_other_seed_other_tokens():
    def draws(seed):
        sampler = Sampler(SamplingParams(temperature=1.0, seed=seed))
        return [sampler(LOGITS) for _ in range(50)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_draws_follow_the_distribution():
    sampler = Sampler(SamplingParams(temperature=1.5, top_k=5, seed=3))
    probs = sampler.distribution(LOGITS)
    counts = np.bincount([sampler(LOGITS) for _ in range(20000)], minlength=50) / 20000
    assert np.abs(counts - probs).max() < 0.015
    assert set(np.flatnonzero(counts)) <= set(np.flatnonzero(probs))


def test_top_k_one_and_tiny_top_p_are_greedy():
    for params in (SamplingParams(temperature=1.0, top_k=1, seed=0), SamplingParams(temperature=1.0, top_p=1e-6, seed=0)):
        sampler = Sampler(params)
        assert {sampler(LOGITS) for _ in range(20)} == {int(np.argmax(LOGITS))}


def test_repetition_penalty_discourages_seen_tokens():
    best = int(np.argmax(LOGITS))
    greedy = Sampler(SamplingParams(temperature=0, repetition_penalty=100.0))
    assert greedy(LOGITS, seen_ids={best}) != best


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_k=-2), dict(top_p=0), dict(top_p=1.5),
                                 dict(repetition_penalty=0), dict(seed=-1), dict(temperature=float("nan"))])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(InputError):
        SamplingParams(**bad)


@pytest.mark.parametrize("temperature,top_k,top_p,penalty", [(0.7, 0, 1.0, 1.0), (1.3, 10, 1.0, 1.0),
                                                              (1.0, 0, 0.6, 1.0), (0.9, 20, 0.8, 1.3)])
def test_distribution_matches_transformers(temperature, top_k, top_p, penalty):
    import torch  # installed by the test command, like transformers
    from transformers.generation import logits_process as lp

    seen = [3, 7, int(np.argmax(LOGITS)), 11]
    processors = [lp.RepetitionPenaltyLogitsProcessor(penalty), lp.TemperatureLogitsWarper(temperature)]
    processors += [lp.TopKLogitsWarper(top_k)] if top_k else []
    processors += [lp.TopPLogitsWarper(top_p)] if top_p < 1 else []
    scores = torch.tensor(LOGITS)[None]
    ids = torch.tensor([seen])
    for processor in processors:
        scores = processor(ids, scores)
    expected = torch.softmax(scores, -1)[0].numpy()
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=penalty)
    actual = Sampler(params).distribution(LOGITS, set(seen))
    np.testing.assert_allclose(actual / actual.sum(), expected, atol=1e-6)
