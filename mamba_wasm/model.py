"""Mamba-1 in NumPy: the math only (no files, no tokens, no sampling).

Glossary (the only dimension names used below):
    l     sequence length
    d     d_model, the residual stream
    d_in  d_inner = expand * d
    n     d_state, the SSM state per channel
    k     d_conv, the causal convolution width
    r     dt_rank, the rank of the time-step projection
    v     vocab size (rows of the embedding)

Each block computes, for input u (paper: Algorithm 2, "selective SSM"):
    x, z   = in_proj(rmsnorm(u))                        (2*d_in,)
    x      = silu(causal_conv1d(x))                     (d_in,)
    dt,B,C = x_proj(x);  dt = softplus(dt_proj(dt))     (d_in,), (n,), (n,)
    h      = exp(dt*A) * h + (dt*x) B                   (d_in, n)   <- the recurrent state
    y      = (h C + D*x) * silu(z)                      (d_in,)
    u      = u + out_proj(y)                            (d,)

Mirrors transformers' MambaMixer / MambaBlock / MambaRMSNorm
(https://github.com/huggingface/transformers/blob/main/src/transformers/models/mamba/modeling_mamba.py)
and johnma2006/mamba-minimal. Differences, each deliberate:
  - A = -exp(A_log) is precomputed at load (weights.py), not per call.
  - The state is an explicit object passed in (MambaState), not a cache inside the model.
  - `prefill` returns logits for the last token only: a full-vocabulary projection per
    prompt token is wasted work (l*v*d multiply-adds) when only the next token is sampled.
  - softplus is log(1 + exp(x)) everywhere; torch switches to x above 20, where the two
    differ by less than float32 resolution.
"""

import math
import sys
from dataclasses import dataclass

import numpy as np

from .errors import InputError

SCAN_CHUNK = 64  # time steps whose (chunk, d_in, n) discretised tensors exist at once

# The fastest projection differs by platform (docs/BENCHMARKS.md). Pyodide's NumPy has no
# BLAS: there `W @ x` runs ~2.5 GFLOP/s and `X @ W.T` ~1 GFLOP/s, but einsum's unrolled
# sum-of-products loop ~5.5 GFLOP/s for both. Natively BLAS matmul is 2-5x faster than einsum.
if sys.platform == "emscripten":

    def _project(x, weight):
        """x (..., in) by weight (out, in): (..., out)."""
        return np.einsum("...j,ij->...i", x, weight)

else:

    def _project(x, weight):
        """x (..., in) by weight (out, in): (..., out)."""
        return weight @ x if x.ndim == 1 else x @ weight.T


@dataclass
class MambaState:
    """Everything the model remembers about the past: its size never grows with l."""

    conv: np.ndarray  # (n_layer, d_in, k): the last k conv inputs per layer, oldest first
    ssm: np.ndarray  # (n_layer, d_in, n)

    def copy(self):
        return MambaState(self.conv.copy(), self.ssm.copy())

    @property
    def nbytes(self):
        return self.conv.nbytes + self.ssm.nbytes


class Mamba:
    def __init__(self, config, weights):
        self.config = config
        self.weights = weights

    @property
    def n_params(self):
        return self.weights.n_params

    @property
    def state_nbytes(self):
        c = self.config
        return 4 * c.n_layer * c.d_inner * (c.d_conv + c.d_state)

    def new_state(self):
        c = self.config
        return MambaState(
            conv=np.zeros((c.n_layer, c.d_inner, c.d_conv), np.float32),
            ssm=np.zeros((c.n_layer, c.d_inner, c.d_state), np.float32),
        )

    def step(self, token, state):
        """Logits (v,) for the next token after `token`; advances `state` in place."""
        self._check_ids([token])
        w = self.weights
        u = w.embedding[token]  # (d,)
        for i, layer in enumerate(w.layers):
            u = u + _mixer_step(_rmsnorm(u, layer.norm, self.config.norm_eps), layer, state.conv[i], state.ssm[i])
        return _project(_rmsnorm(u, w.norm_f, self.config.norm_eps), w.lm_head)  # (v,)

    def forward(self, ids, state=None):
        """Logits (l, v) for every position of `ids`, from `state` (fresh when None)."""
        u = self._blocks(ids, self.new_state() if state is None else state)  # (l, d)
        return _project(_rmsnorm(u, self.weights.norm_f, self.config.norm_eps), self.weights.lm_head)  # (l, v)

    def prefill(self, ids, state):
        """Run the prompt over the whole sequence at once; logits (v,) after its last token."""
        u = self._blocks(ids, state)[-1]  # (d,)
        return _project(_rmsnorm(u, self.weights.norm_f, self.config.norm_eps), self.weights.lm_head)  # (v,)

    def _blocks(self, ids, state):
        self._check_ids(ids)
        u = self.weights.embedding[np.asarray(ids, dtype=np.int64)]  # (l, d)
        for i, layer in enumerate(self.weights.layers):
            u = u + _mixer_sequence(_rmsnorm(u, layer.norm, self.config.norm_eps), layer, state.conv[i], state.ssm[i])
        return u

    def _check_ids(self, ids):
        if len(ids) == 0:
            raise InputError("no tokens to run: the prompt is empty")
        v = self.config.vocab_size
        for token in ids:
            if not 0 <= int(token) < v:
                raise InputError(f"token id {int(token)} is out of range for a vocabulary of {v}")


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


def _mixer_step(u, w, conv_state, h):
    """One token through one mixer. u (d,); conv_state (d_in, k) and h (d_in, n) updated in place."""
    d_in, n = w.A.shape
    xz = _linear(u, w.in_proj, w.in_proj_bias)  # (2*d_in,)
    x, z = xz[:d_in], xz[d_in:]

    conv_state[:, :-1] = conv_state[:, 1:]  # shift the window one step back in time
    conv_state[:, -1] = x
    x = np.einsum("ik,ik->i", conv_state, w.conv)  # (d_in,)
    if w.conv_bias is not None:
        x += w.conv_bias
    x = _silu(x)

    dt_bc = _project(x, w.x_proj)  # (r + 2n,)
    r = dt_bc.shape[0] - 2 * n
    dt = _softplus(_linear(dt_bc[:r], w.dt_proj, w.dt_proj_bias))  # (d_in,)
    B, C = dt_bc[r : r + n], dt_bc[r + n :]  # (n,), (n,)

    decay = dt[:, None] * w.A  # (d_in, n): reused below for dBx
    h *= np.exp(decay, out=decay)
    h += np.multiply.outer(dt * x, B, out=decay)  # (d_in, n)
    y = np.einsum("in,n->i", h, C)  # (d_in,)
    y += w.D * x
    y *= _silu(z)
    return _linear(y, w.out_proj, w.out_proj_bias)  # (d,)


def _mixer_sequence(u, w, conv_state, h):
    """A whole sequence through one mixer. u (l, d); the state is read, then left after u's end.

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

    dt_bc = _project(x, w.x_proj)  # (l, r + 2n)
    r = dt_bc.shape[1] - 2 * n
    dt = _softplus(_project(dt_bc[:, :r], w.dt_proj) + w.dt_proj_bias)  # (l, d_in)
    B, C = dt_bc[:, r : r + n], dt_bc[:, r + n :]  # (l, n), (l, n)

    y = np.empty_like(x)  # (l, d_in)
    for start in range(0, l, SCAN_CHUNK):
        t = slice(start, start + SCAN_CHUNK)
        dA = np.exp(dt[t, :, None] * w.A)  # (chunk, d_in, n)
        hs = (dt[t] * x[t])[:, :, None] * B[t, None, :]  # (chunk, d_in, n): dBx, becomes h per step
        previous = h
        for i in range(hs.shape[0]):
            dA[i] *= previous
            hs[i] += dA[i]  # h_t = dA_t * h_(t-1) + dBx_t
            previous = hs[i]
        h[:] = previous
        y[t] = np.einsum("tin,tn->ti", hs, C[t])  # (chunk, d_in)
    y = (y + w.D * x) * _silu(z)  # (l, d_in)
    return _linear(y, w.out_proj, w.out_proj_bias)  # (l, d)
