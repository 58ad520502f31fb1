"""A model split across K shards by channel (tensor parallel): the math of model.py (Mamba-1) and
mamba2.py (Mamba-2) on a slice of d_in, with the points where shards meet made explicit.

Glossary (model.py's and mamba2.py's names, plus):
    K     the number of shards
    d_s   the channels of d_in one shard holds (contiguous; shard sizes differ by at most one unit)
    h_s   Mamba-2: the heads one shard holds (its d_s = h_s * p channels); g_s the groups they are in
    v_s   the vocabulary rows one shard holds (split the same way)

Why a layer splits cleanly: inside a mixer the channels of d_in are on their own (Mamba-1: in_proj
rows, the conv, dt_proj rows, A, D and the state h are per channel; Mamba-2: the same per head),
except at a few points where all channels meet, and those split into partial sums over each
shard's channels:
    Mamba-1  x_proj   (r+2n, d_in) @ x (d_in,)  =  sum over shards of (r+2n, d_s) @ x_s   -> (r+2n,)
             out_proj (d, d_in)    @ y (d_in,)  =  sum over shards of (d, d_s) @ y_s      -> (d,)
    Mamba-2  out_proj, as above; the gated RMSNorm's sum of squares per group (g,), but only when
             the plan cuts a group (its heads on two shards). B and C (in_proj rows and conv
             channels per group) are computed by every shard that holds a head of the group.
The residual stream u (d,) is replicated: every shard holds it and computes the same norms. The
embedding and lm_head are split by vocabulary rows: the embedding lookup is a sum as well (the
shard that holds the token's row gives it, the others give zeros), and each shard ends with its
slice of the logits, which the caller joins (a gather) before sampling.

The protocol: a shard's step is a Python generator. It yields a partial sum (a float32 array) and
must be sent back the sum of that array over all K shards; it returns its logits slice. Per token:
1 + 2*n_layer sums for Mamba-1 (the embedding, then x_proj and out_proj per layer); 1 + n_layer for
Mamba-2 (2*n_layer more when a group is cut); and one gather. A prompt block of l tokens takes the
same number of sums, each l times larger. How the partial sums travel (one process, MessageChannel,
SharedArrayBuffer) is the caller's business: `ShardedMamba` below runs K shards in one process.
Two rules for any transport:
  - Sum in shard order, left to right (`sum_partials`), so that replicas of u stay bit-identical
    when each worker sums for itself: float addition is commutative but not associative.
  - A sum sent back is only read, never written: in one process every shard gets the same array.

The per-shard math is model.py's `_mixer_step` / `_mixer_sequence` (here) and mamba2.py's
(sharded2.py), line for line, cut open where the shards meet; a bias after a sum (out_proj's) is
added once, to the sum.
"""

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .guards import check_ids, check_state, check_token
from .model import SCAN_CHUNK, MambaState, _linear, _project, _rmsnorm, _silu, _softplus


@dataclass(frozen=True)
class Shard:
    """Which part of the model one shard holds."""

    index: int  # 0 .. count-1: also its place in every sum
    count: int  # K
    heads: range  # Mamba-2: its heads; Mamba-1: its channels (each has its own time step: a head of one)
    channels: range  # its d_s channels of d_in
    groups: range  # Mamba-2: the groups its heads are in (it computes their B and C); Mamba-1: empty
    vocab: range  # its v_s rows of the embedding and lm_head
    cut_groups: bool  # Mamba-2: some group's heads are on two shards (the same for every shard of a plan)


def plan_shards(config, count):
    """The K shards of a model: balanced contiguous slices of its heads (Mamba-1: channels) and of
    the vocabulary."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(f"the number of shards must be a positive integer, got {count!r}")
    mamba2 = config.architecture == "Mamba-2"
    units, unit = (config.n_heads, "heads") if mamba2 else (config.d_inner, "channels")
    if count > min(units, config.vocab_size):
        raise InputError(
            f"{count} shards is more than this model has {unit} ({units}) or vocabulary rows "
            f"({config.vocab_size}) to split"
        )
    heads = [_split(units, count, i) for i in range(count)]
    if not mamba2:
        return tuple(
            Shard(i, count, heads[i], heads[i], range(0), _split(config.vocab_size, count, i), False)
            for i in range(count)
        )
    p, per_group = config.head_dim, config.n_heads // config.n_groups
    cut = any(part.start % per_group for part in heads)
    return tuple(
        Shard(
            index=i,
            count=count,
            heads=part,
            channels=range(part.start * p, part.stop * p),
            groups=range(part.start // per_group, -(-part.stop // per_group)),
            vocab=_split(config.vocab_size, count, i),
            cut_groups=cut,
        )
        for i, part in enumerate(heads)
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
    """One shard: its weights (weights.py's dataclasses, each array cut to the shard), and its
    step, forward and prefill as generators of partial sums. `mixers` does one layer's mixer
    (Mamba1Mixers below, sharded2.Mamba2Mixers)."""

    def __init__(self, config, shard, weights, mixers):
        self.config = config
        self.shard = shard
        self.weights = weights
        self.mixers = mixers
        self._state_shapes = {name: (config.n_layer, *shape) for name, shape in mixers.state_shapes.items()}

    @property
    def nbytes(self):
        """Bytes of the weights this shard holds (float32, each distinct array once)."""
        return 4 * self.weights.n_params

    def new_state(self):
        return MambaState(**{name: np.zeros(shape, np.float32) for name, shape in self._state_shapes.items()})

    def step(self, token, state):
        """Generator: one token. Yields partial sums, takes their totals; returns logits (v_s,)."""
        token = check_token(token, self.config.vocab_size)
        self._check_state(state)
        return self._step(token, state)

    def forward(self, ids, state):
        """Generator: a sequence from `state`. Yields partial sums; returns logits (l, v_s)."""
        ids = check_ids(ids, self.config.vocab_size)
        self._check_state(state)
        return self._sequence(ids, state, last_only=False)

    def prefill(self, ids, state):
        """Generator: a prompt block from `state`. Yields partial sums; returns logits (v_s,) after it."""
        ids = check_ids(ids, self.config.vocab_size)
        self._check_state(state)
        return self._sequence(ids, state, last_only=True)

    def _step(self, token, state):
        w, eps = self.weights, self.config.norm_eps
        row = np.zeros(self.config.d_model, np.float32)  # (d,)
        if token in self.shard.vocab:
            row += w.embedding[token - self.shard.vocab.start]
        u = yield from _exchange(row)  # (d,): the embedding row, from whichever shard holds it
        for i, layer in enumerate(w.layers):
            u = u + (yield from self.mixers.step(_rmsnorm(u, layer.norm, eps), layer, state.conv[i], state.ssm[i]))
        return _project(_rmsnorm(u, w.norm_f, eps), w.lm_head)  # (v_s,)

    def _sequence(self, ids, state, last_only):
        w, eps, vocab = self.weights, self.config.norm_eps, self.shard.vocab
        rows = np.zeros((len(ids), self.config.d_model), np.float32)  # (l, d)
        mine = (ids >= vocab.start) & (ids < vocab.stop)
        rows[mine] = w.embedding[ids[mine] - vocab.start]
        u = yield from _exchange(rows)  # (l, d)
        for i, layer in enumerate(w.layers):
            u = u + (yield from self.mixers.sequence(_rmsnorm(u, layer.norm, eps), layer, state.conv[i], state.ssm[i]))
        if last_only:
            u = u[-1]  # (d,): only the next token is sampled
        return _project(_rmsnorm(u, w.norm_f, eps), w.lm_head)  # (v_s,) or (l, v_s)

    def _check_state(self, state):
        """Refused before the generator starts, so a refused call changes nothing."""
        try:
            check_state(state, MambaState, self._state_shapes)
        except InputError as exc:
            raise InputError(f"shard {self.shard.index + 1} of {self.shard.count} needs its own state: {exc}") from None


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


class Mamba1Mixers:
    """A Mamba-1 shard's mixer: the state rows it holds, and one layer for one token or a sequence."""

    def __init__(self, config, shard):
        c = config
        self.state_shapes = {"conv": (len(shard.channels), c.d_conv), "ssm": (len(shard.channels), c.d_state)}
        # where this shard's state rows go in the whole model's state (n_layer, rows, ...), and how many rows it has
        self.state_rows = {"conv": (np.arange(shard.channels.start, shard.channels.stop), c.d_inner),
                           "ssm": (np.arange(shard.channels.start, shard.channels.stop), c.d_inner)}

    @staticmethod
    def step(u, w, conv_state, h):
        return _mixer_step(u, w, conv_state, h)

    @staticmethod
    def sequence(u, w, conv_state, h):
        return _mixer_sequence(u, w, conv_state, h)


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
    """The K shards' states; together they are exactly the whole model's MambaState (ShardedMamba.join_state)."""

    shards: tuple  # K MambaStates, each of its shard's rows (MambaShard.new_state)

    def copy(self):
        return ShardedState(tuple(state.copy() for state in self.shards))

    @property
    def nbytes(self):
        return sum(state.nbytes for state in self.shards)


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

    def join_state(self, state):
        """The whole model's MambaState from the shards' (rows that several shards hold, Mamba-2's
        B and C of a cut group, are the same on each)."""
        whole = {}
        for name in ("conv", "ssm"):
            for shard, mine in zip(self.shards, self._states(state)):
                rows, total = shard.mixers.state_rows[name]
                part = getattr(mine, name)  # (n_layer, rows, ...)
                if name not in whole:
                    whole[name] = np.zeros((part.shape[0], total, *part.shape[2:]), np.float32)
                whole[name][:, rows] = part
        return MambaState(**whole)

    def split_state(self, state):
        """A whole model's MambaState cut into this model's shards (copies)."""
        return ShardedState(
            tuple(
                MambaState(**{name: getattr(state, name)[:, shard.mixers.state_rows[name][0]] for name in ("conv", "ssm")})
                for shard in self.shards
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
