"""Mamba-1's recurrent step as the paper writes it: read this first, model.py is the fast version.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023,
https://arxiv.org/abs/2312.00752. Names as in the paper: x the input of the SSM, Δ `delta`,
A, B, C, D, Ā `A_bar`, B̄ `B_bar`, h the state, y the output; shapes in the glossary of model.py
(d d_model, d_in = expand*d channels, n d_state, k d_conv, r dt_rank, v vocab).

The paper discretises with a zero-order hold (Eq. 4): Ā = exp(ΔA), B̄ = (ΔA)⁻¹(exp(ΔA) − I)·ΔB.
Here, as in the authors' code (mamba_ssm's selective_scan_ref) and transformers' MambaMixer,
B̄ is simplified to Δ·B (first order in Δ); Ā keeps the exact exp(ΔA). A = −exp(A_log) was
computed once at load (weights.py). tests/test_reference.py holds model.py to this step.
"""

import numpy as np


def step(model, token, state):
    """Logits (v,) for the token after `token`; updates `state` (model.new_state()) in place."""
    c, w = model.config, model.weights
    u = w.embedding[token]  # (d,)
    for i, layer in enumerate(w.layers):  # residual blocks: u + Mamba(RMSNorm(u))
        u = u + mamba_block(rms_norm(u, layer.norm, c.norm_eps), layer, state.conv[i], state.ssm[i])
    return w.lm_head @ rms_norm(u, w.norm_f, c.norm_eps)  # (v,)


def mamba_block(u, w, conv_window, h):
    """One time step of the Mamba block (Fig. 3); conv_window (d_in, k) and h (d_in, n) are updated."""
    d_in, n = w.A.shape
    r = w.dt_proj.shape[1]
    # Fig. 3: project up into the SSM branch x and the gate branch z.
    x_and_z = linear(w.in_proj, u, w.in_proj_bias)  # (2*d_in,)
    x, z = x_and_z[:d_in], x_and_z[d_in:]
    # Fig. 3: a causal depthwise convolution over the last k inputs, then SiLU.
    conv_window[:] = np.concatenate([conv_window[:, 1:], x[:, None]], axis=1)  # oldest first
    x = silu(linear_bias(np.sum(conv_window * w.conv, axis=1), w.conv_bias))  # (d_in,)
    # Algorithm 2, lines 2-4 (Section 3.6): B = s_B(x), C = s_C(x), Δ = τ_Δ(Parameter + s_Δ(x)),
    # with s_Δ a rank-r projection and τ_Δ = softplus. B, C, Δ depend on x: the "selection".
    delta_low, B, C = np.split(w.x_proj @ x, [r, r + n])  # (r,), (n,), (n,)
    delta = softplus(w.dt_proj @ delta_low + w.dt_proj_bias)  # (d_in,): one Δ per channel
    # Algorithm 2, line 5: discretize(Δ, A, B). Eq. 4 for Ā; B̄ = Δ·B (simplified, see above).
    A_bar = np.exp(delta[:, None] * w.A)  # (d_in, n)
    B_bar = delta[:, None] * B[None, :]  # (d_in, n)
    # Algorithm 2, line 6: y = SSM(Ā, B̄, C)(x), one step of the recurrence Eq. 2a/2b per channel.
    h[:] = A_bar * h + B_bar * x[:, None]  # (2a) h_t = Ā h_{t-1} + B̄ x_t    (d_in, n)
    y = h @ C  # (2b) y_t = C h_t    (d_in,)
    y = y + w.D * x  # the skip connection D (a parameter of the SSM in the authors' code)
    # Fig. 3: gate with SiLU(z), project back down to d.
    return linear(w.out_proj, y * silu(z), w.out_proj_bias)  # (d,)


def linear(weight, x, bias):
    return linear_bias(weight @ x, bias)


def linear_bias(y, bias):
    return y if bias is None else y + bias


def rms_norm(u, scale, eps):
    return u / np.sqrt(np.mean(u * u) + eps) * scale


def silu(x):
    return x / (1 + np.exp(-x))


def softplus(x):
    return np.logaddexp(0, x)  # log(1 + exp(x)) without overflow for large x
