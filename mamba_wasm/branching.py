"""What a generation keeps so it can restart at any of its tokens with a different choice.

Mamba's state has a fixed size, so going back to token t needs no prefix cache: the state after
the prompt and the tokens before t is enough. Keeping it for every token would cost
state.nbytes per token (mamba-130m: 24 layers x 1536 channels x (4 + 16) floats = 2.9 MB), so a
Snapshot is kept every `every` tokens and a branch replays at most every-1 tokens from the
nearest one (each replayed token is one model.step, a decode step's time). Memory: one Snapshot
(state.nbytes + 4*v bytes of logits) per `every` generated tokens, plus the sampler's random
generator state per token (a few ints).

How the random generator continues after a branch (so a branch is reproducible): a branch at
token t with token x is the run that drew token t as usual and then put x in its place. The
generator is restored to its state before draw t, draw t is made and discarded, and every later
draw follows from there: exactly what a fresh run with the same seed that forced x at t does.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Snapshot:
    position: int  # the generated token these are the inputs of
    state: object  # the model's state after the prompt and generated_ids[:position]; never advanced
    logits: np.ndarray  # (v,) the logits generated token `position` is drawn from


class History:
    """Snapshots every `every` tokens and the random generator before each draw, of one generation."""

    def __init__(self, every):
        self.every = every
        self.snapshots = []  # Snapshot at positions 0, every, 2*every, ...
        self.rng_states = []  # rng_states[t]: the sampler's bit generator state before drawing token t

    def record(self, position, state, logits, rng):
        """Called just before token `position` is drawn from `logits` with the model in `state`."""
        self.rng_states.append(rng.bit_generator.state)
        if position % self.every == 0:
            self.snapshots.append(Snapshot(position, state.copy(), logits))

    def nearest(self, position):
        """The last Snapshot at or before `position`."""
        return self.snapshots[position // self.every]

    def truncate(self, position):
        """Forget everything after the draw of token `position` (a branch replaces what follows)."""
        del self.rng_states[position + 1 :]
        del self.snapshots[position // self.every + 1 :]

    @property
    def nbytes(self):
        """Bytes held by the snapshots (states and logits)."""
        return sum(s.state.nbytes + s.logits.nbytes for s in self.snapshots)
