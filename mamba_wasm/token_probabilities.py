"""Why this token: its probability under the distribution it was drawn from and under the raw
model, and the most likely alternatives with both.

The sampled distribution is the one Sampler draws from: after repetition penalty, temperature,
top-k and top-p, renormalised over what the filters kept (Sampler draws within the kept mass), so
it sums to 1 over its support; at temperature 0 (greedy) all of it is on the chosen token. The
raw model's distribution is the softmax of the model's logits, rows past the tokenizer's
vocabulary excluded (they are never sampled). Session computes these only when asked
(`record_probabilities=True`): nothing here runs otherwise.
"""

from dataclasses import dataclass

import numpy as np

N_ALTERNATIVES = 10


@dataclass(frozen=True)
class Alternative:
    token: int
    sampled_probability: float  # under the distribution the sampler drew from
    model_probability: float  # under the raw model


@dataclass(frozen=True)
class TokenProbabilities:
    """One generated token: how likely it was, and what else could have come."""

    token: int
    sampled_probability: float
    model_probability: float
    alternatives: tuple  # N_ALTERNATIVES Alternative, most likely to be drawn first (ties: by the model's)


def sampled_distribution(sampler, logits, seen_ids):
    """(v,) float64 probabilities the sampler draws the next token from; sums to 1."""
    if sampler.params.temperature == 0:
        probs = np.zeros(logits.shape[0], np.float64)
        probs[sampler(logits, seen_ids)] = 1.0  # greedy draws nothing from the random generator
        return probs
    probs = sampler.distribution(logits, seen_ids).astype(np.float64)  # (v,) zero outside the kept tokens
    return probs / probs.sum()


def model_distribution(logits):
    """(v,) float64 softmax of the logits; -inf rows (padding) get 0."""
    logits = logits.astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def token_probabilities(sampler, logits, seen_ids, token):
    """TokenProbabilities of `token`, drawn by `sampler` from `logits` (v,) with `seen_ids` penalised."""
    sampled = sampled_distribution(sampler, logits, seen_ids)  # (v,)
    model = model_distribution(logits)  # (v,)
    order = np.lexsort((-model, -sampled))[:N_ALTERNATIVES]  # the last key sorts first
    alternatives = tuple(Alternative(int(i), float(sampled[i]), float(model[i])) for i in order)
    return TokenProbabilities(int(token), float(sampled[token]), float(model[token]), alternatives)
