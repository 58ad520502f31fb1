"""How surprised the model is by a text: the negative log-likelihood of each of its tokens.

    result = score(model, tokenizer, "To be, or not to be")
    result.nll              # (l-1,) nats: token i+1 given tokens 0..i, under the raw model
    result.nats_per_char, result.perplexity

This is the cross-entropy transformers' *ForCausalLM computes with `labels=input_ids` (logits of
position i against id i+1, softmax over every row of the head, no sampling filters), computed with
the model's sequence mode (`model.forward`) a block at a time, carrying the state across blocks,
so a long text never holds more than SCORE_BLOCK rows of logits. Any model with
`forward(ids, state)` and `new_state()` works: Mamba-1 and Mamba-2 alike.
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import InputError

SCORE_BLOCK = 256  # positions whose (block, v) logits exist at once


@dataclass(frozen=True)
class Score:
    """The per-token negative log-likelihood of one sequence of ids, and its totals."""

    ids: list  # every id run through the model, the start token (if any) first
    nll: np.ndarray  # (len(ids)-1,) float64 nats: -log p(ids[i+1] | ids[:i+1])
    n_chars: int  # characters of text the scored tokens stand for (0 when scored from ids alone)
    start_token: Optional[int] = None  # the id put before the text so its first token is scored too

    @property
    def total_nats(self):
        return float(self.nll.sum())

    @property
    def nats_per_token(self):
        return self.total_nats / len(self.nll)

    @property
    def perplexity(self):
        """exp(nats per token): the number of equally likely tokens the model hesitates between."""
        return math.exp(self.nats_per_token)

    @property
    def nats_per_char(self):
        """Total nats over characters: compares models whatever their tokenizers. None from ids alone."""
        return self.total_nats / self.n_chars if self.n_chars else None

    def totals(self):
        """The figures as a plain dict (JSON-ready)."""
        return {"tokens": len(self.nll), "chars": self.n_chars, "total_nats": self.total_nats,
                "nats_per_token": self.nats_per_token, "nats_per_char": self.nats_per_char,
                "perplexity": self.perplexity}


def score_ids(model, ids):
    """Score of ids[1:] given what precedes each, from a fresh state. Needs at least two ids."""
    ids = list(ids)
    if len(ids) < 2:
        raise InputError(f"scoring needs at least two token ids (the first is only context), got {len(ids)}")
    state = model.new_state()
    nll = np.empty(len(ids) - 1, np.float64)
    for start in range(0, len(ids) - 1, SCORE_BLOCK):
        block = ids[start : start + SCORE_BLOCK]
        targets = np.asarray(ids[start + 1 : start + 1 + len(block)], np.int64)  # (b,) the next id of each position
        logits = model.forward(block, state)[: len(targets)].astype(np.float64)  # (b, v)
        top = logits.max(axis=1)  # (b,)
        log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))  # (b,) log of the softmax's sum
        nll[start : start + len(targets)] = log_z - logits[np.arange(len(targets)), targets]
    return Score(ids=ids, nll=nll, n_chars=0)


def score(model, tokenizer, text):
    """Score every token of `text`.

    When the tokenizer has an end-of-text token, the text is scored as a document after it (how
    these models see a document's start in training), so its first token is scored too and
    nats_per_char is total nats / len(text). Without one, the first token is only context and
    its characters are not counted.
    """
    if not isinstance(text, str):
        raise InputError(f"the text to score must be a str, got {type(text).__name__}")
    if not text:
        raise InputError("the text to score is empty")
    start = tokenizer.eos_token_id
    ids = ([start] if start is not None else []) + tokenizer.encode(text)
    if len(ids) < 2:
        raise InputError("the text is a single token and the tokenizer has no end-of-text token "
                         "to put before it: there is nothing to score")
    result = score_ids(model, ids)
    n_chars = len(text) if start is not None else len(text) - len(tokenizer.decode(ids[:1]))
    return Score(ids=result.ids, nll=result.nll, n_chars=n_chars, start_token=start)
