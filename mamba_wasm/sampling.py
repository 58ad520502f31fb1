"""Pick the next token from logits: greedy, or seeded sampling with the usual filters.

The filters follow transformers' logits processors, applied in the same order as its
generate(): RepetitionPenaltyLogitsProcessor, then TemperatureLogitsWarper, TopKLogitsWarper,
TopPLogitsWarper (https://github.com/huggingface/transformers/blob/main/src/transformers/generation/logits_process.py).
candle's LogitsProcessor defines temperature, top-k and top-p the same way.
"""

import math
import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is picked from the logits; every field is checked (InputError)."""

    temperature: float = 0.8  # 0 means greedy
    top_k: int = 0  # 0 means no limit
    top_p: float = 1.0  # 1 means no nucleus filter
    repetition_penalty: float = 1.0  # 1 means none
    seed: Optional[int] = None  # None draws a fresh seed

    def __post_init__(self):
        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InputError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value!r}")
        checks = (
            (self.temperature >= 0, "temperature must be >= 0"),
            (isinstance(self.top_k, int) and self.top_k >= 0, "top_k must be an integer >= 0"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0"),
            (self.seed is None or (isinstance(self.seed, int) and self.seed >= 0), "seed must be an integer >= 0"),
        )
        for ok, message in checks:
            if not ok:
                raise InputError(f"{message} (got {self})")


class Sampler:
    """Stateful only through its random generator, so one seed reproduces a whole generation."""

    def __init__(self, params=SamplingParams()):
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits, seen_ids=()):
        """The next token id from logits (v,); `seen_ids` are the ids the penalty applies to."""
        if self.params.temperature == 0:
            return int(np.argmax(self._penalized(logits, seen_ids)))
        cumulative = np.cumsum(self.distribution(logits, seen_ids), dtype=np.float64)  # (v,)
        drawn = np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right")
        return int(min(drawn, len(cumulative) - 1))

    def distribution(self, logits, seen_ids=()):
        """The probabilities (v,) a token is drawn from at temperature > 0."""
        p = self.params
        logits = self._penalized(logits, seen_ids) / np.float32(p.temperature)
        if 0 < p.top_k < logits.shape[0]:
            kth = np.partition(logits, -p.top_k)[-p.top_k]
            logits = np.where(logits < kth, -np.inf, logits)
        probs = _softmax(logits)
        return _nucleus(probs, p.top_p) if p.top_p < 1.0 else probs

    def _penalized(self, logits, seen_ids):
        logits = np.asarray(logits, dtype=np.float32)
        if self.params.repetition_penalty == 1.0 or not len(seen_ids):
            return logits
        return _penalize(logits, np.fromiter(seen_ids, np.int64), self.params.repetition_penalty)


def _penalize(logits, ids, penalty):
    """Make already-seen tokens less likely: divide positive logits, multiply negative ones."""
    logits = logits.copy()
    seen = logits[ids]
    logits[ids] = np.where(seen < 0, seen * penalty, seen / penalty)
    return logits


def _softmax(logits):
    e = np.exp(logits - np.max(logits))
    return e / np.sum(e)


def _nucleus(probs, top_p):
    """Keep the most probable tokens until their mass reaches top_p (at least one token)."""
    order = np.argsort(-probs, kind="stable")  # most probable first
    mass_before = np.cumsum(probs[order]) - probs[order]  # mass of strictly more probable tokens
    kept = order[mass_before < top_p]
    filtered = np.zeros_like(probs)
    filtered[kept] = probs[kept]
    return filtered
