"""Mamba-1 split across K shards by channel (tensor parallel): model.py's math on a slice of d_in.

Glossary (model.py's names, plus):
    K     the number of shards
    d_s   the channels of d_in one shard holds (d_in split as evenly as possible: sizes differ by <= 1)
    v_s   the vocabulary rows one shard holds (split the same way)

Why a layer splits cleanly: inside a mixer every channel of d_in is on its own (in_proj rows, the
conv, dt_proj rows, A, D and the state h are per channel) except at two products where all
channels meet, and those split into partial sums over each shard's columns:
    x_proj   (r+2n, d_in) @ x (d_in,)  =  sum over shards of (r+2n, d_s) @ x_s   -> (r+2n,)
    out_proj (d, d_in)    @ y (d_in,)  =  sum over shards of (d, d_s) @ y_s      -> (d,)
The residual stream u (d,) is replicated: every shard holds it and computes the same norms. The
embedding and lm_head are split by vocabulary rows: the embedding lookup is a sum as well (the
shard that holds the token's row gives it, the others give zeros), and each shard ends with its
slice of the logits, which the caller joins (a gather) before sampling.

The protocol: a shard's step is a Python generator. It yields a partial sum (a float32 array) and
must be sent back the sum of that array over all K shards; it returns its logits slice. Per token
that is 1 + 2*n_layer sums (the embedding, then x_proj and out_proj per layer) and one gather; a
prompt block of l tokens takes the same number of sums, each l times larger. How the partial sums
travel (one process, MessageChannel, SharedArrayBuffer) is the caller's business: `ShardedMamba`
below runs K shards in one process. Two rules for any transport:
  - Sum in shard order, left to right (`sum_partials`), so that replicas of u stay bit-identical
    when each worker sums for itself: float addition is commutative but not associative.
  - A sum sent back is only read, never written: in one process every shard gets the same array.

The per-shard math is model.py's `_mixer_step` / `_mixer_sequence`, line for line, cut open at the
two reductions; the biases after a reduction (out_proj's) are added once, to the sum.
"""

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .model import MambaState, SCAN_CHUNK, _linear, _project, _rmsnorm, _silu, _softplus


@dataclass(frozen=True)
class Shard:
    """Which part of the model one shard holds."""

    index: int  # 0 .. count-1: also its place in every sum
    count: int  # K
    channels: range  # its d_s channels of d_in
    vocab: range  # its v_s rows of the embedding and lm_head


def plan_shards(config, count):
    """The K shards of a model: balanced contiguous slices of d_in and of the vocabulary."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(f"the number of shards must be a positive integer, got {count!r}")
    if count > min(config.d_inner, config.vocab_size):
        raise InputError(
            f"{count} shards is more than this model has channels ({config.d_inner}) or vocabulary rows "
            f"({config.vocab_size}) to split"
        )
    return tuple(
        Shard(index=i, count=count, channels=_split(config.d_inner, count, i), vocab=_split(config.vocab_size, count, i))
        for i in range(count)
    )


def _split(total, count, index):
    return range(index * total // count, (index + 1) * total // count)


def sum_partials(partials):
    """The sum over shards of one partial-sum array, added in shard order (see the docstring)."""
    first = partials[0]
    for other in partials[1:]:
        if other.shape != first.shape:
            raise InputError(f"shards are out of step: partial sums of shapes {first.shape} and {other.shape}")
    if len(partials) == 1:
        return first
    total = first + partials[1]
    for other in partials[2:]:
        total += other
    return total


class MambaShard:
    """One shard's weights (weights.py's dataclasses with d_in -> d_s and v -> v_s) and steps."""

    def __init__(self, config, shard, weights):
        self.config = config
        self.shard = shard
        self.weights = weights

    @property
    def nbytes(self):
        """Bytes of the weights this shard holds (float32, each distinct array once)."""
        return 4 * self.weights.n_params

    def new_state(self):
        c, d_s = self.config, len(self.shard.channels)
        return MambaState(
            conv=np.zeros((c.n_layer, d_s, c.d_conv), np.float32),
            ssm=np.zeros((c.n_layer, d_s, c.d_state), np.float32),
        )

    def step(self, token, state):
        """Generator: one token. Yields partial sums, takes their totals; returns logits (v_s,)."""
        self._check(state, [token])
        return self._step(int(token), state)

    def forward(self, ids, state):
        """Generator: a sequence from `state`. Yields partial sums; returns logits (l, v_s)."""
        self._check(state, ids)
        return self._sequence(np.asarray(ids, dtype=np.int64), state, last_only=False)

    def prefill(self, ids, state):
        """Generator: a prompt block from `state`. Yields partial sums; returns logits (v_s,) after it."""
        self._check(state, ids)
        return self._sequence(np.asarray(ids, dtype=np.int64), state, last_only=True)

    def _step(self, token, state):
        w, eps = self.weights, self.config.norm_eps
        row = np.zeros(self.config.d_model, np.float32)  # (d,)
        if token in self.shard.vocab:
            row += w.embedding[token - self.shard.vocab.start]
        u = yield from _exchange(row)  # (d,): the embedding row, from whichever shard holds it
        for i, layer in enumerate(w.layers):
            u = u + (yield from _mixer_step(_rmsnorm(u, layer.norm, eps), layer, state.conv[i], state.ssm[i]))
        return _project(_rmsnorm(u, w.norm_f, eps), w.lm_head)  # (v_s,)

    def _sequence(self, ids, state, last_only):
        w, eps, vocab = self.weights, self.config.norm_eps, self.shard.vocab
        rows = np.zeros((len(ids), self.config.d_model), np.float32)  # (l, d)
        mine = (ids >= vocab.start) & (ids < vocab.stop)
        rows[mine] = w.embedding[ids[mine] - vocab.start]
        u = yield from _exchange(rows)  # (l, d)
        for i, layer in enumerate(w.layers):
            u = u + (yield from _mixer_sequence(_rmsnorm(u, layer.norm, eps), layer, state.conv[i], state.ssm[i]))
        if last_only:
            u = u[-1]  # (d,): only the next token is sampled
        return _project(_rmsnorm(u, w.norm_f, eps), w.lm_head)  # (v_s,) or (l, v_s)

    def _check(self, state, ids):
        """Refuse bad input before the generator starts, so a refused call changes nothing."""
        if len(ids) == 0:
            raise InputError("no tokens to run: the prompt is empty")
        v = self.config.vocab_size
        for token in ids:
            if not 0 <= int(token) < v:
                raise InputError(f"token id {int(token)} is out of range for a vocabulary of {v}")
        c, d_s = self.config, len(self.shard.channels)
        conv, ssm = (c.n_layer, d_s, c.d_conv), (c.n_layer, d_s, c.d_state)
        if not isinstance(state, MambaState) or (state.conv.shape, state.ssm.shape) != (conv, ssm):
            raise InputError(
                f"shard {self.shard.index + 1} of {self.shard.count} needs its own state (conv {conv}, ssm {ssm}); "
                f"got {_describe(state)}"
            )


def _describe(state):
    if isinstance(state, MambaState):
        return f"conv {state.conv.shape}, ssm {state.ssm.shape}"
    return type(state).__name__


def _exchange(partial):
    """Yield one partial sum; return the total sent back, checked (a transport bug must not broadcast silently)."""
    total = yield partial
    if not isinstance(total, np.ndarray) or total.shape != partial.shape:
        raise InputError(
            f"the sum sent back to a shard is {_shape_of(total)}, but its partial sum has shape {partial.shape}"
        )
    return total


def _shape_of(value):
    return f"of shape {value.shape}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"


def _mixer_step(u, w, conv_state, h):
    """Generator: model._mixer_step on d_s channels; yields x_proj's and out_proj's partial sums,
    returns this layer's update of u (d,), the same on every shard."""
    d_s, n = w.A.shape
    xz = _linear(u, w.in_proj, w.in_proj_bias)  # (2*d_s,)
    x, z = xz[:d_s], xz[d_s:]

    conv_state[:, :-1] = conv_state[:, 1:]
    conv_state[:, -1] = x
    x = np.einsum("ik,ik->i", conv_state, w.conv)  # (d_s,)
    if w.conv_bias is not None:
        x += w.conv_bias
    x = _silu(x)

    delta_bc = yield from _exchange(_project(x, w.x_proj))  # (r + 2n,): summed over every shard's channels
    r = delta_bc.shape[0] - 2 * n
    delta = _softplus(_linear(delta_bc[:r], w.dt_proj, w.dt_proj_bias))  # (d_s,)
    B, C = delta_bc[r : r + n], delta_bc[r + n :]  # (n,), (n,)

    decay = delta[:, None] * w.A  # (d_s, n)
    h *= np.exp(decay, out=decay)
    h += np.multiply.outer(delta * x, B, out=decay)  # (d_s, n)
    y = np.einsum("in,n->i", h, C)  # (d_s,)
    y += w.D * x
    y *= _silu(z)
    mixed = yield from _exchange(_project(y, w.out_proj))  # (d,): summed over every shard's channels
    return mixed if w.out_proj_bias is None else mixed + w.out_proj_bias


def _mixer_sequence(u, w, conv_state, h):
    """Generator: model._mixer_sequence on d_s channels; yields x_proj's (l, r+2n) and out_proj's
    (l, d) partial sums, returns this layer's update of u (l, d)."""
    d_s, n = w.A.shape
    l, k = u.shape[0], conv_state.shape[1]
    xz = _linear(u, w.in_proj, w.in_proj_bias)  # (l, 2*d_s)
    x, z = xz[:, :d_s], xz[:, d_s:]

    window = np.concatenate([conv_state[:, 1:].T, x])  # (k-1+l, d_s)
    conv_state[:] = window[-k:].T
    x = sum(window[j : j + l] * w.conv[:, j] for j in range(k))  # (l, d_s)
    if w.conv_bias is not None:
        x += w.conv_bias
    x = _silu(x)

    delta_bc = yield from _exchange(_project(x, w.x_proj))  # (l, r + 2n): summed over every shard's channels
    r = delta_bc.shape[1] - 2 * n
    delta = _softplus(_project(delta_bc[:, :r], w.dt_proj) + w.dt_proj_bias)  # (l, d_s)
    B, C = delta_bc[:, r : r + n], delta_bc[:, r + n :]  # (l, n), (l, n)

    y = np.empty_like(x)  # (l, d_s)
    for start in range(0, l, SCAN_CHUNK):
        t = slice(start, start + SCAN_CHUNK)
        dA = np.exp(delta[t, :, None] * w.A)  # (chunk, d_s, n)
        hs = (delta[t] * x[t])[:, :, None] * B[t, None, :]  # (chunk, d_s, n): dBx, becomes h per step
        previous = h
        for i in range(hs.shape[0]):
            dA[i] *= previous
            hs[i] += dA[i]
            previous = hs[i]
        h[:] = previous
        y[t] = np.einsum("tin,tn->ti", hs, C[t])  # (chunk, d_s)
    y = (y + w.D * x) * _silu(z)  # (l, d_s)
    mixed = yield from _exchange(_project(y, w.out_proj))  # (l, d): summed over every shard's channels
    return mixed if w.out_proj_bias is None else mixed + w.out_proj_bias


@dataclass
class ShardedState:
    """The K shards' states; together they are exactly a MambaState split along d_in."""

    shards: tuple  # K MambaStates: conv (n_layer, d_s, k), ssm (n_layer, d_s, n)

    def copy(self):
        return ShardedState(tuple(state.copy() for state in self.shards))

    @property
    def nbytes(self):
        return sum(state.nbytes for state in self.shards)

    def joined(self):
        """The whole model's MambaState: conv (n_layer, d_in, k), ssm (n_layer, d_in, n)."""
        return MambaState(
            conv=np.concatenate([state.conv for state in self.shards], axis=1),
            ssm=np.concatenate([state.ssm for state in self.shards], axis=1),
        )


class ShardedMamba:
    """K shards run in one process, in lockstep, summing with plain NumPy: Mamba's interface
    (new_state, step, forward, prefill), so generation.Session runs on it unchanged."""

    def __init__(self, shards):
        shards = tuple(shards)
        if any(s.config != shards[0].config for s in shards):
            raise InputError("a sharded model's shards must all come from the same checkpoint (their configs differ)")
        if not shards or [s.shard for s in shards] != list(plan_shards(shards[0].config, shards[0].shard.count)):
            raise InputError(
                "a sharded model needs every shard of one plan, in order: got shards "
                f"{[f'{s.shard.index + 1}/{s.shard.count}' for s in shards]}"
            )
        self.shards = shards
        self.config = shards[0].config

    @property
    def nbytes(self):
        return sum(shard.nbytes for shard in self.shards)

    @property
    def state_nbytes(self):
        return sum(shard.new_state().nbytes for shard in self.shards)

    def new_state(self):
        return ShardedState(tuple(shard.new_state() for shard in self.shards))

    def split_state(self, state):
        """A whole model's MambaState cut into this model's shards (copies)."""
        return ShardedState(
            tuple(
                MambaState(state.conv[:, s.shard.channels].copy(), state.ssm[:, s.shard.channels].copy())
                for s in self.shards
            )
        )

    def step(self, token, state):
        return self._run([shard.step(token, mine) for shard, mine in zip(self.shards, self._states(state))])

    def forward(self, ids, state=None):
        state = self.new_state() if state is None else state
        return self._run([shard.forward(ids, mine) for shard, mine in zip(self.shards, self._states(state))])

    def prefill(self, ids, state):
        return self._run([shard.prefill(ids, mine) for shard, mine in zip(self.shards, self._states(state))])

    def _states(self, state):
        if not isinstance(state, ShardedState) or len(state.shards) != len(self.shards):
            raise InputError(f"a model in {len(self.shards)} shards needs a ShardedState of {len(self.shards)}")
        return state.shards

    @staticmethod
    def _run(steps):
        """Drive the shards' generators in lockstep; join their logits slices (the gather)."""
        logits, total = [None] * len(steps), None
        while True:
            partials = []
            for i, step in enumerate(steps):
                try:
                    partials.append(step.send(total))
                except StopIteration as finished:
                    logits[i] = finished.value
            if not partials:
                return np.concatenate(logits, axis=-1)  # (v,) or (l, v)
            if len(partials) != len(steps):
                raise InputError("shards are out of step: some finished while others still had sums to exchange")
            total = sum_partials(partials)
