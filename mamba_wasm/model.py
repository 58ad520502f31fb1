"""Mamba-1 in NumPy, fast: the math only (no files, no tokens, no sampling).

The model of Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023,
https://arxiv.org/abs/2312.00752. Read reference.py first: the same step in the paper's notation,
equation by equation, without the speed tricks below (tests/test_reference.py holds the two together).

Glossary (the only dimension names used below):
    l     sequence length
    d     d_model, the residual stream
    d_in  d_inner = expand * d
    n     d_state, the SSM state per channel
    k     d_conv, the causal convolution width
    r     dt_rank, the rank of Δ's projection
    v     vocab size (rows of the embedding)

Each residual block computes, for input u (the Mamba block of the paper's Fig. 3, around the
selective SSM of its Algorithm 2):
    x, z    = in_proj(rmsnorm(u))                        (d_in,), (d_in,)     Fig. 3
    x       = silu(causal_conv1d(x))                     (d_in,)              Fig. 3
    Δ, B, C = softplus(dt_proj(.)), x_proj(x) split      (d_in,), (n,), (n,)  Algorithm 2, lines 2-4
    Ā, B̄    = exp(ΔA), ΔB                                (d_in, n)            Algorithm 2, line 5 (Eq. 4)
    h       = Ā h + B̄ x                                  (d_in, n)            Eq. 2a   <- the recurrent state
    y       = (h C + D x) * silu(z)                      (d_in,)              Eq. 2b, D skip, Fig. 3 gate
    u       = u + out_proj(y)                            (d,)
B̄ = Δ·B is the simplified discretisation of the authors' code, not the zero-order hold of Eq. 4
(which is (ΔA)⁻¹(exp(ΔA) − I)·ΔB); Ā = exp(ΔA) is exact. `delta` in the code is Δ; checkpoints
call it dt (dt_proj, dt_rank).

Mirrors transformers' MambaMixer / MambaBlock / MambaRMSNorm
(https://github.com/huggingface/transformers/blob/main/src/transformers/models/mamba/modeling_mamba.py)
and johnma2006/mamba-minimal. Differences, each deliberate:
  - A = -exp(A_log) is precomputed at load (weights.py), not per call.
  - The state is an explicit object passed in (MambaState), not a cache inside the model.
  - `prefill` returns logits for the last token only: a full-vocabulary projection per
    prompt token is wasted work (l*v*d multiply-adds) when only the next token is sampled.
  - softplus is log(1 + exp(x)) everywhere; torch switches to x above 20, where the two
    differ by less than float32 resolution.
Speed tricks, each measured (docs/BENCHMARKS.md): the projection's formulation per platform
(`_project`), one scratch buffer per step reused for Ā and then B̄x, and a scan over chunks of
time steps for whole sequences.
"""

import math
import sys
from dataclasses import dataclass

import numpy as np

from . import kernels
from .guards import check_ids, check_state, check_token
from .packed import project_dequantized

SCAN_CHUNK = 64  # time steps whose (chunk, d_in, n) discretised tensors exist at once

# The fastest projection differs by platform (docs/BENCHMARKS.md). In the browser the worker installs
# SIMD kernels (kernels.py, web/kernels/matmul.wat) that take every float32 weight and the packed
# ones (packed.py). Without them, Pyodide's NumPy has no BLAS: there `W @ x` runs ~2.5 GFLOP/s and
# `X @ W.T` ~1 GFLOP/s, but einsum's unrolled sum-of-products loop ~5.5 GFLOP/s for both. Natively
# BLAS matmul is 2-5x faster than einsum.
if sys.platform == "emscripten":

    def _project(x, weight):
        """x (..., in) by weight (out, in): (..., out)."""
        y = kernels.project(x, weight)
        return np.einsum("...j,ij->...i", x, weight) if y is None else y

else:

    def _project(x, weight):
        """x (..., in) by weight (out, in): (..., out)."""
        if type(weight) is not np.ndarray:  # a packed matrix (packed.py)
            return project_dequantized(x, weight)
        return weight @ x if x.ndim == 1 else x @ weight.T


@dataclass
class MambaState:
    """Everything the model remembers about the past: its size never grows with l.

    Made by `Mamba.new_state()` (zeros: no past); `step`, `prefill` and `forward` update it in
    place. `copy()` it to keep a point to return to (Session keeps the state after the prompt).
    """

    conv: np.ndarray  # (n_layer, d_in, k): the last k conv inputs per layer, oldest first
    ssm: np.ndarray  # (n_layer, d_in, n): h, the SSM state of every channel

    def copy(self):
        """An independent copy: advancing one does not change the other."""
        return MambaState(conv=self.conv.copy(), ssm=self.ssm.copy())

    @property
    def nbytes(self):
        return self.conv.nbytes + self.ssm.nbytes

    def __repr__(self):
        return f"MambaState(conv={self.conv.shape}, ssm={self.ssm.shape}, {self.nbytes:,} bytes)"


class Mamba:
    """A Mamba-1 language model: config (MambaConfig) and float32 weights (MambaWeights), no state.

    Load one with `load_model(folder)` or `from_pretrained(folder)`. Token ids are ints in
    [0, config.vocab_size); every call that takes a state advances it in place, and the state must
    come from this model's `new_state()`. Bad input raises InputError.
    """

    def __init__(self, config, weights):
        self.config = config
        self.weights = weights
        c = config
        self._state_shapes = {"conv": (c.n_layer, c.d_inner, c.d_conv), "ssm": (c.n_layer, c.d_inner, c.d_state)}

    @property
    def n_params(self):
        return self.weights.n_params

    @property
    def state_nbytes(self):
        c = self.config
        return 4 * c.n_layer * c.d_inner * (c.d_conv + c.d_state)

    def new_state(self):
        """A fresh state (no past): conv (n_layer, d_in, k) and ssm (n_layer, d_in, n), float32 zeros."""
        return MambaState(**{name: np.zeros(shape, np.float32) for name, shape in self._state_shapes.items()})

    def step(self, token, state, probe=None):
        """Logits (v,) for the next token after `token` (an int id); advances `state` in place.
        A `probe` (inspection.Probe) records Δ, kept state and state norm per layer."""
        token = check_token(token, self.config.vocab_size)
        check_state(state, MambaState, self._state_shapes)
        w = self.weights
        u = w.embedding[token]  # (d,)
        for i, layer in enumerate(w.layers):
            u = u + _mixer_step(_rmsnorm(u, layer.norm, self.config.norm_eps), layer, state.conv[i], state.ssm[i],
                                None if probe is None else probe.recorder(i))
        return _project(_rmsnorm(u, w.norm_f, self.config.norm_eps), w.lm_head)  # (v,)

    def forward(self, ids, state=None, probe=None):
        """Logits (l, v) for every position of `ids` (a sequence of l int ids).

        Starts from `state` and advances it past the last id; with no state, from a fresh one.
        """
        u = self._blocks(ids, self.new_state() if state is None else state, probe)  # (l, d)
        return _project(_rmsnorm(u, self.weights.norm_f, self.config.norm_eps), self.weights.lm_head)  # (l, v)

    def prefill(self, ids, state, probe=None):
        """Run the prompt `ids` over the whole sequence at once, advancing `state`; logits (v,)
        after its last token only."""
        u = self._blocks(ids, state, probe)[-1]  # (d,)
        return _project(_rmsnorm(u, self.weights.norm_f, self.config.norm_eps), self.weights.lm_head)  # (v,)

    def _blocks(self, ids, state, probe=None):
        ids = check_ids(ids, self.config.vocab_size)  # (l,) int64
        check_state(state, MambaState, self._state_shapes)
        u = self.weights.embedding[ids]  # (l, d)
        for i, layer in enumerate(self.weights.layers):
            u = u + _mixer_sequence(_rmsnorm(u, layer.norm, self.config.norm_eps), layer, state.conv[i], state.ssm[i],
                                    None if probe is None else probe.recorder(i))
        return u


def _rmsnorm(u, scale, eps):
    """u (..., d) scaled to unit root-mean-square, then by `scale` (d,). MambaRMSNorm."""
    if u.ndim == 1:  # one token: a dot product beats np.mean's Python-level overhead in Pyodide
        return u * (scale / np.float32(math.sqrt(float(np.dot(u, u)) / u.shape[0] + eps)))
    return u / np.sqrt(np.mean(u * u, axis=-1, keepdims=True) + eps) * scale


def _silu(x):
    """x * sigmoid(x), computed in one scratch array."""
    t = np.negative(x)
    np.exp(t, out=t)
    t += 1.0
    return np.divide(x, t, out=t)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _linear(x, weight, bias):
    """x (..., in) times weight (out, in).T, plus bias (out,) when the checkpoint has one."""
    y = _project(x, weight)
    if bias is not None:
        y += bias
    return y


def _mixer_step(u, w, conv_state, h, record=None):
    """One token through one mixer. u (d,); conv_state (d_in, k) and h (d_in, n) updated in place.
    record: an inspection.Probe's recorder(layer), or None."""
    d_in, n = w.A.shape
    xz = _linear(u, w.in_proj, w.in_proj_bias)  # (2*d_in,)
    x, z = xz[:d_in], xz[d_in:]

    conv_state[:, :-1] = conv_state[:, 1:]  # shift the window one step back in time
    conv_state[:, -1] = x
    x = np.einsum("ik,ik->i", conv_state, w.conv)  # (d_in,)
    if w.conv_bias is not None:
        x += w.conv_bias
    x = _silu(x)

    delta_B_C = _project(x, w.x_proj)  # (r + 2n,)
    r = delta_B_C.shape[0] - 2 * n
    delta = _softplus(_linear(delta_B_C[:r], w.dt_proj, w.dt_proj_bias))  # Δ (d_in,)
    B, C = delta_B_C[r : r + n], delta_B_C[r + n :]  # (n,), (n,)

    scratch = delta[:, None] * w.A  # (d_in, n) ΔA: one buffer, holding Ā and then B̄x
    A_bar = np.exp(scratch, out=scratch)  # Ā = exp(ΔA)
    kept = None if record is None else A_bar.mean()  # read before the buffer is reused
    h *= A_bar
    Bx_bar = np.multiply.outer(delta * x, B, out=scratch)  # B̄x = (Δx) B, over Ā (no longer needed)
    h += Bx_bar  # h = Ā h + B̄ x  (d_in, n)
    if record is not None:
        flat = h.reshape(-1)
        record(delta, kept, math.sqrt(float(np.dot(flat, flat))))
    y = np.einsum("in,n->i", h, C)  # (d_in,)
    y += w.D * x
    y *= _silu(z)
    return _linear(y, w.out_proj, w.out_proj_bias)  # (d,)


def _mixer_sequence(u, w, conv_state, h, record=None):
    """A whole sequence through one mixer. u (l, d); the state is read, then left after u's end.
    record: an inspection.Probe's recorder(layer), or None.

    The projections run for all l tokens at once; only the recurrence walks through time.
    """
    d_in, n = w.A.shape
    l, k = u.shape[0], conv_state.shape[1]
    xz = _linear(u, w.in_proj, w.in_proj_bias)  # (l, 2*d_in)
    x, z = xz[:, :d_in], xz[:, d_in:]

    window = np.concatenate([conv_state[:, 1:].T, x])  # (k-1+l, d_in): the past, then the sequence
    conv_state[:] = window[-k:].T
    x = sum(window[j : j + l] * w.conv[:, j] for j in range(k))  # (l, d_in)
    if w.conv_bias is not None:
        x += w.conv_bias
    x = _silu(x)

    delta_B_C = _project(x, w.x_proj)  # (l, r + 2n)
    r = delta_B_C.shape[1] - 2 * n
    delta = _softplus(_project(delta_B_C[:, :r], w.dt_proj) + w.dt_proj_bias)  # Δ (l, d_in)
    B, C = delta_B_C[:, r : r + n], delta_B_C[:, r + n :]  # (l, n), (l, n)

    y = np.empty_like(x)  # (l, d_in)
    kept, state_norm = (None, None) if record is None else (np.empty(l, np.float32), np.empty(l, np.float32))  # (l,) each
    for start in range(0, l, SCAN_CHUNK):
        t = slice(start, start + SCAN_CHUNK)
        A_bar = np.exp(delta[t, :, None] * w.A)  # (chunk, d_in, n)
        if record is not None:
            kept[t] = A_bar.mean(axis=(1, 2))  # read before the loop multiplies h into it
        hs = (delta[t] * x[t])[:, :, None] * B[t, None, :]  # (chunk, d_in, n): B̄x, becomes h per step
        previous = h
        for i in range(hs.shape[0]):
            A_bar[i] *= previous  # now Ā_t h_(t-1)
            hs[i] += A_bar[i]  # h_t = Ā_t h_(t-1) + B̄_t x_t
            previous = hs[i]
        h[:] = previous
        if record is not None:
            state_norm[t] = np.sqrt(np.einsum("tin,tin->t", hs, hs))
        y[t] = np.einsum("tin,tn->ti", hs, C[t])  # (chunk, d_in)
    if record is not None:
        record(delta, kept, state_norm)
    y = (y + w.D * x) * _silu(z)  # (l, d_in)
    return _linear(y, w.out_proj, w.out_proj_bias)  # (l, d)
