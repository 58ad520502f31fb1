"""Mamba-2 in NumPy: the math only (no files, no tokens, no sampling).

Glossary (the only dimension names used below):
    l     sequence length
    d     d_model, the residual stream
    d_in  d_inner = expand * d = h * p
    h     heads: each has one scalar decay A and one time step dt
    p     head_dim, the channels of a head
    n     d_state, the SSM state per channel
    g     n_groups: the h/g heads of a group share B and C (j below counts heads within a group)
    e     conv channels, d_in + 2*g*n: x, B and C go through the convolution together
    k     d_conv, the causal convolution width
    c     chunk length in sequence mode
    v     vocab size (rows of the embedding)

Each block computes, for input u (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and
Efficient Algorithms Through Structured State Space Duality", arXiv 2405.21060: the Mamba-2 block
of Section 7 around the SSD layer of Sections 3 and 6):
    z, xBC, dt = in_proj(rmsnorm(u))                          (d_in,), (e,), (h,)
    x, B, C    = silu(causal_conv1d(xBC))                     (h, p), (g, n), (g, n)
    dt         = softplus(dt + dt_bias)                       (h,)
    S          = exp(dt*A) * S + dt * x B^T                   (h, p, n)   <- the recurrent state
    y          = S C + D*x                                    (h, p)
    y          = rmsnorm per group(y * silu(z)) * gated_norm  (d_in,)
    u          = u + out_proj(y)                              (d,)
A is one scalar per head (Mamba-1 has a (d_in, n) matrix), so over a sequence the SSM is a masked
matrix product, y = (L o C B^T) (dt*x) with L[i, s] = exp(a_i - a_s) for s <= i, a_i the sum of
dt*A up to step i (the 1-semiseparable matrix of Section 3). Sequence mode computes it in chunks, the SSD algorithm of Section 6 and Listing 1
(`ssd_minimal_discrete`): inside a chunk the quadratic form (the diagonal blocks), between chunks
the state carried across (the low-rank off-diagonal blocks).

Mirrors transformers' Mamba2Mixer.forward, mamba2_selective_state_update (one token) and
mamba2_chunk_scan (a sequence), MambaRMSNormGated and Mamba2RMSNorm
(https://github.com/huggingface/transformers/blob/main/src/transformers/models/mamba2/modeling_mamba2.py),
and state-spaces/mamba's Mamba2.step (mamba_ssm/modules/mamba2.py) and ssd_minimal.py.
Differences, each deliberate:
  - A = -exp(A_log) is precomputed at load (checkpoint.py), not per call.
  - The state is an explicit MambaState passed in, not a cache inside the model.
  - `prefill` returns logits for the last token only (as model.py's Mamba-1 does).
  - B and C are broadcast over the heads of their group instead of repeated per head: the same
    numbers without (l, h, n) copies.
  - Between chunks the state is carried from one chunk to the next in a loop (the "state passing"
    of Section 6, as the reference's _state_passing_fwd kernel does) instead of Listing 1's
    (chunks+1)^2 decay matrix: the same sums, and one chunk's tensors in memory at a time.
  - The chunk length is SSD_CHUNK, picked for speed in Pyodide (docs/BENCHMARKS.md), not
    config.chunk_size, the training kernels' tile size: the result depends on it only by float
    rounding (tests/test_mamba2.py runs several, dividing the length and not).
  - dt is clipped to config.dt_limit in the step too; the references clip it in the chunked scan
    only. With the default (0, inf) the clip is a no-op after a softplus; for other limits this keeps
    step-by-step equal to sequence mode.
  - softplus is log(1 + exp(x)) everywhere (as model.py).
"""

import math

import numpy as np

from .guards import check_ids, check_state, check_token
from .model import MambaState, _linear, _project, _rmsnorm, _silu, _softplus  # shared with Mamba-1

SSD_CHUNK = 32  # time steps whose (h, c, c) intra-chunk products exist at once


class Mamba2:
    """Same interface as model.Mamba: forward, step, prefill, new_state, n_params, state_nbytes.
    Bad input (ids, or a state not from this model's new_state()) raises InputError, as there."""

    def __init__(self, config, weights):
        self.config = config
        self.weights = weights
        c = config
        self._state_shapes = {"conv": (c.n_layer, c.conv_dim, c.d_conv),
                              "ssm": (c.n_layer, c.n_heads, c.head_dim, c.d_state)}

    @property
    def n_params(self):
        return self.weights.n_params

    @property
    def state_nbytes(self):
        return self.config.state_nbytes()

    def new_state(self):
        """conv (n_layer, e, k): the last k inputs of x, B and C; ssm (n_layer, h, p, n)."""
        return MambaState(**{name: np.zeros(shape, np.float32) for name, shape in self._state_shapes.items()})

    def step(self, token, state, probe=None):
        """Logits (v,) for the next token after `token`; advances `state` in place. A `probe`
        (inspection.Probe) records Δ (per head), kept state and state norm per layer."""
        token = check_token(token, self.config.vocab_size)
        check_state(state, MambaState, self._state_shapes)  # a Mamba-1's or another model's state: refused
        c, w = self.config, self.weights
        u = w.embedding[token]  # (d,)
        for i, layer in enumerate(w.layers):
            u = u + _mixer_step(_rmsnorm(u, layer.norm, c.norm_eps), layer, c, state.conv[i], state.ssm[i],
                                None if probe is None else probe.recorder(i))
        return _project(_rmsnorm(u, w.norm_f, c.norm_eps), w.lm_head)  # (v,)

    def forward(self, ids, state=None, probe=None):
        """Logits (l, v) for every position of `ids`, from `state` (fresh when None)."""
        u = self._blocks(ids, self.new_state() if state is None else state, probe)  # (l, d)
        return _project(_rmsnorm(u, self.weights.norm_f, self.config.norm_eps), self.weights.lm_head)  # (l, v)

    def prefill(self, ids, state, probe=None):
        """Run the prompt over the whole sequence at once; logits (v,) after its last token."""
        u = self._blocks(ids, state, probe)[-1]  # (d,)
        return _project(_rmsnorm(u, self.weights.norm_f, self.config.norm_eps), self.weights.lm_head)  # (v,)

    def _blocks(self, ids, state, probe=None):
        ids = check_ids(ids, self.config.vocab_size)  # (l,) int64
        check_state(state, MambaState, self._state_shapes)
        c = self.config
        u = self.weights.embedding[ids]  # (l, d)
        for i, layer in enumerate(self.weights.layers):
            u = u + _mixer_sequence(_rmsnorm(u, layer.norm, c.norm_eps), layer, c, state.conv[i], state.ssm[i],
                                    None if probe is None else probe.recorder(i))
        return u


def _gated_rmsnorm(y, z, scale, n_groups, eps):
    """MambaRMSNormGated with norm_before_gate=False: y (..., d_in) gated by silu(z), then scaled to
    unit root-mean-square within each of the g groups of d_in/g channels, then by `scale` (d_in,)."""
    y = y * _silu(z)  # (..., d_in)
    grouped = y.reshape(*y.shape[:-1], n_groups, -1)  # (..., g, d_in/g)
    mean_square = np.einsum("...i,...i->...", grouped, grouped) / np.float32(grouped.shape[-1])  # (..., g)
    grouped /= np.sqrt(mean_square + np.float32(eps))[..., None]  # einsum: np.mean is Python-level in Pyodide
    return y * scale


def _time_step(dt, dt_bias, limit):
    """softplus(dt + dt_bias) clipped to `limit`, whose default (0, inf) clips nothing after a
    softplus: then np.clip, a Python-level function in Pyodide, is skipped."""
    dt = _softplus(dt + dt_bias)
    low, high = limit
    return np.clip(dt, low, high) if low > 0 or high < math.inf else dt


def _split_xbc(xbc, c):
    """(..., e) -> x (..., h, p), B (..., g, n), C (..., g, n): views, no copies."""
    d_in, gn = c.d_inner, c.n_groups * c.d_state
    lead = xbc.shape[:-1]
    x = xbc[..., :d_in].reshape(*lead, c.n_heads, c.head_dim)
    B = xbc[..., d_in : d_in + gn].reshape(*lead, c.n_groups, c.d_state)
    C = xbc[..., d_in + gn :].reshape(*lead, c.n_groups, c.d_state)
    return x, B, C


def _mixer_step(u, w, c, conv_state, ssm, record=None):
    """One token through one mixer. u (d,); conv_state (e, k) and ssm (h, p, n) updated in place.
    record: an inspection.Probe's recorder(layer), or None.

    The reference: Mamba2.step in mamba_ssm and mamba2_selective_state_update in transformers."""
    d_in, e, g = c.d_inner, c.conv_dim, c.n_groups
    zxbcdt = _linear(u, w.in_proj, w.in_proj_bias)  # (d_in + e + h,)
    z, xbc, dt = zxbcdt[:d_in], zxbcdt[d_in : d_in + e], zxbcdt[d_in + e :]

    conv_state[:, :-1] = conv_state[:, 1:]  # shift the window one step back in time
    conv_state[:, -1] = xbc
    xbc = np.einsum("ek,ek->e", conv_state, w.conv)  # (e,)
    if w.conv_bias is not None:
        xbc += w.conv_bias
    x, B, C = _split_xbc(_silu(xbc), c)  # (h, p), (g, n), (g, n)

    dt = _time_step(dt, w.dt_bias, c.dt_limit)  # (h,)
    kept = np.exp(dt * w.A)  # (h,)
    ssm *= kept[:, None, None]  # (h, p, n): each head decays by its own scalar
    grouped = ssm.reshape(g, -1, c.head_dim, c.d_state)  # (g, j, p, n): a view of ssm
    dtx = (dt[:, None] * x).reshape(g, -1, c.head_dim)  # (g, j, p)
    grouped += np.einsum("gjp,gn->gjpn", dtx, B)  # S += dt * x B^T, B shared by the group's heads
    y = np.einsum("gjpn,gn->gjp", grouped, C).reshape(d_in)  # (d_in,) = S C
    if record is not None:
        flat = ssm.reshape(-1)
        record(dt, kept.mean(), math.sqrt(float(np.dot(flat, flat))))
    y += (w.D[:, None] * x).reshape(d_in)
    y = _gated_rmsnorm(y, z, w.gated_norm, g, c.gated_norm_eps)  # (d_in,)
    return _linear(y, w.out_proj, w.out_proj_bias)  # (d,)


def _mixer_sequence(u, w, c, conv_state, ssm, record=None):
    """A whole sequence through one mixer. u (l, d); the state is read, then left after u's end.
    record: an inspection.Probe's recorder(layer), or None.

    The projections and the convolution run for all l tokens at once; the SSM runs chunk by chunk."""
    d_in, e = c.d_inner, c.conv_dim
    l, k = u.shape[0], c.d_conv
    zxbcdt = _linear(u, w.in_proj, w.in_proj_bias)  # (l, d_in + e + h)
    z, xbc, dt = zxbcdt[:, :d_in], zxbcdt[:, d_in : d_in + e], zxbcdt[:, d_in + e :]

    window = np.concatenate([conv_state[:, 1:].T, xbc])  # (k-1+l, e): the past, then the sequence
    conv_state[:] = window[-k:].T
    xbc = sum(window[j : j + l] * w.conv[:, j] for j in range(k))  # (l, e)
    if w.conv_bias is not None:
        xbc += w.conv_bias
    x, B, C = _split_xbc(_silu(xbc), c)  # (l, h, p), (l, g, n), (l, g, n)

    dt = _time_step(dt, w.dt_bias, c.dt_limit)  # (l, h)
    if record is not None:
        record(dt, np.exp(dt * w.A).mean(axis=1), _state_norms(x, dt, w.A, B, ssm))
    y = _ssd(x, dt, w.A, B, C, ssm)  # (l, h, p)
    y += w.D[:, None] * x
    y = _gated_rmsnorm(y.reshape(l, d_in), z, w.gated_norm, c.n_groups, c.gated_norm_eps)  # (l, d_in)
    return _linear(y, w.out_proj, w.out_proj_bias)  # (l, d)


def _state_norms(x, dt, A, B, state):
    """(l,) the norm of the state after each token, for the probe: the chunked scan never holds the
    state per token, so the recurrence runs token by token here, from a copy of `state` (h, p, n)."""
    g = B.shape[1]
    S = state.copy().reshape(g, -1, *state.shape[1:])  # (g, j, p, n)
    norms = np.empty(x.shape[0], np.float32)
    for t in range(x.shape[0]):
        S *= np.exp(dt[t] * A).reshape(g, -1)[:, :, None, None]
        S += np.einsum("gjp,gn->gjpn", (dt[t, :, None] * x[t]).reshape(g, -1, x.shape[2]), B[t])
        flat = S.reshape(-1)
        norms[t] = math.sqrt(float(np.dot(flat, flat)))
    return norms


def _ssd(x, dt, A, B, C, state):
    """y (l, h, p) of the SSM S_t = exp(dt_t A) S_(t-1) + dt_t x_t B_t^T, y_t = S_t C_t, from
    `state` (h, p, n), which is left as S after the last step. x (l, h, p), dt (l, h), A (h,),
    B and C (l, g, n). Chunk by chunk: Listing 1 of the paper with its steps 1, 4 and 2+3 below."""
    l, h, p = x.shape
    g, n = B.shape[1:]
    j = h // g
    y = np.empty_like(x)
    for start in range(0, l, SSD_CHUNK):
        t = slice(start, start + SSD_CHUNK)
        c = x[t].shape[0]
        xs = (x[t] * dt[t, :, None]).reshape(c, g, j, p)  # (c, g, j, p): dt*x, the discretised input
        dtA = dt[t] * A  # (c, h): log of each step's decay
        cum = np.cumsum(dtA, axis=0)  # (c, h): log decay from the chunk's start to each step, inclusive

        # 1. Diagonal block: y_i += sum over s <= i of (C_i . B_s) exp(cum_i - cum_s) xs_s
        decay = np.exp(_segsum(dtA.T)).reshape(g, j, c, c)  # (g, j, c, c), zero above the diagonal
        scores = np.einsum("lgn,sgn->gls", C[t], B[t])  # (g, c, c): C_i . B_s
        scores = scores[:, None] * decay  # (g, j, c, c)
        y_chunk = np.einsum("gjls,sgjp->lgjp", scores, xs)  # (c, g, j, p)

        # 4. Off-diagonal blocks, left factor: what the state entering the chunk contributes,
        #    y_i += exp(cum_i) C_i . S_start
        grouped = state.reshape(g, j, p, n)  # a view of state
        y_chunk += np.einsum("lgn,gjpn->lgjp", C[t], grouped) * np.exp(cum).reshape(c, g, j, 1)

        # 2+3. Right and centre factors: the state leaving the chunk,
        #    S_end = exp(cum_last) S_start + sum over s of exp(cum_last - cum_s) xs_s B_s^T
        to_end = np.exp(cum[-1] - cum).reshape(c, g, j, 1)  # (c, g, j, 1)
        grouped *= np.exp(cum[-1]).reshape(g, j, 1, 1)
        grouped += np.einsum("sgn,sgjp->gjpn", B[t], xs * to_end)
        y[t] = y_chunk.reshape(c, h, p)
    return y


def _segsum(a):
    """a (..., c) -> (..., c, c) with [i, s] = a[s+1] + ... + a[i] for s <= i and -inf above the
    diagonal, so exp() of it is the causal decay mask. Summed over the mask rather than as
    cumsum[i] - cumsum[s]: no cancellation between two large sums (transformers' segment_sum)."""
    c = a.shape[-1]
    below = np.tri(c, c, -1, dtype=bool)  # [m, s]: m > s
    terms = np.where(below, a[..., :, None], np.float32(0))  # (..., c, c): [m, s] = a[m] where m > s
    sums = np.cumsum(terms, axis=-2)  # (..., c, c): [i, s] = sum of a[m] for s < m <= i
    return np.where(np.tri(c, c, 0, dtype=bool), sums, np.float32(-math.inf))
