"""A fast CPU training path for Mamba-2, with parameter names identical to HF's Mamba2ForCausalLM.

Training only: torch is a dev dependency here and the mamba_wasm package never imports this file.

Glossary (the names used below):
    b  batch size      l  sequence length    d  d_model (hidden_size)    d_in  expand * d
    h  heads           p  head_dim           n  d_state                  g  n_groups
    k  d_conv          T  chunk length       c  number of chunks (l / T)  v  vocab size

Why a separate module: HF's torch path (transformers.models.mamba2.modeling_mamba2.mamba2_chunk_scan,
the chunked SSD of "Transformers are SSMs", listing 1) is matmul-based but lays its einsums out as
(b, c, l, s, h) with the heads last and repeats B and C for every head, so one training step of the
demo configuration ran at ~250-500 tokens/s on one thread here. The same SSD written with the heads
before the chunk positions, (b, g, h/g, c, T, .), turns every contraction into a batched matmul over
contiguous (T, T), (T, n), (T, p) blocks, and computes C·Bᵀ once per group instead of once per head.
The chunk-to-chunk state passing is a short Python loop (l / T iterations). Everything is ordinary
autograd: no kernels to compile.

Mirrors transformers.models.mamba2.modeling_mamba2: Mamba2RMSNorm, MambaRMSNormGated
(norm_before_gate=False: y * silu(z), then RMS over groups of d_in / g), Mamba2Mixer's torch path
(in_proj -> z | xBC | dt; causal depthwise conv + silu over xBC; dt = softplus(dt + dt_bias);
A = -exp(A_log) per head; SSD; + D * x; gated norm; out_proj), Mamba2Block (pre-norm residual)
and a tied lm_head. Differences: dt is not clamped (time_step_limit (0, inf), HF's default, is
then a no-op); the initialisation follows mamba_ssm's Mamba2 (A uniform in [1, 16]), see _init_like_mamba_ssm.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from fast_lm import TiedLM, dt_bias_init


@dataclass(frozen=True)
class Mamba2Config:
    vocab_size: int
    hidden_size: int = 256          # d
    num_hidden_layers: int = 6
    state_size: int = 64            # n
    head_dim: int = 64              # p
    expand: int = 2
    n_groups: int = 1               # g
    conv_kernel: int = 4            # k
    chunk_size: int = 64            # T
    layer_norm_epsilon: float = 1e-5

    @property
    def intermediate_size(self):    # d_in
        return self.expand * self.hidden_size

    @property
    def num_heads(self):            # h
        return self.intermediate_size // self.head_dim

    @property
    def conv_dim(self):             # channels of xBC
        return self.intermediate_size + 2 * self.n_groups * self.state_size

    def __post_init__(self):
        if self.intermediate_size % self.head_dim or self.num_heads % self.n_groups:
            raise ValueError(f"expand*hidden_size {self.intermediate_size} must split into heads of "
                             f"{self.head_dim}, and the {self.num_heads} heads into {self.n_groups} groups")

    def hf_dict(self):
        """config.json for transformers.Mamba2Config (model_type "mamba2"). time_step_limit is left
        out: its default (0, inf) is what we train with, and JSON has no infinity."""
        return {
            "architectures": ["Mamba2ForCausalLM"],
            "model_type": "mamba2",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "state_size": self.state_size,
            "expand": self.expand,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "n_groups": self.n_groups,
            "conv_kernel": self.conv_kernel,
            "chunk_size": self.chunk_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "use_bias": False,
            "use_conv_bias": True,
            "hidden_act": "silu",
            "rms_norm": True,
            "norm_before_gate": False,
            "residual_in_fp32": True,
            "tie_word_embeddings": True,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "pad_token_id": 0,
        }


def ssd(x, dt, A, B, C, T):
    """Chunked SSD ("Transformers are SSMs", listing 1 `ssd_minimal_discrete`), heads before positions.
    x (b, l, h, p), dt (b, l, h) after softplus, A (h,) negative, B and C (b, l, g, n).
    Returns y (b, l, h, p) without the D skip. The state starts at zero."""
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    pad = (-l) % T
    if pad:  # zero dt and x on padded positions: they neither decay nor feed the state
        x, dt, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    c = (l + pad) // T
    xdt = (x * dt[..., None]).view(b, c, T, g, h // g, p).permute(0, 3, 4, 1, 2, 5)  # (b, g, h/g, c, T, p)
    a = (dt * A).view(b, c, T, g, h // g).permute(0, 3, 4, 1, 2)                     # (b, g, h/g, c, T)
    Bc = B.view(b, c, T, g, n).permute(0, 3, 1, 2, 4)[:, :, None]                    # (b, g, 1, c, T, n)
    Cc = C.view(b, c, T, g, n).permute(0, 3, 1, 2, 4)[:, :, None]                    # (b, g, 1, c, T, n)
    a_cum = torch.cumsum(a, dim=-1)                                                  # (b, g, h/g, c, T)

    # 1. within a chunk: y_t = sum_{s<=t} (C_t . B_s) exp(a_cum_t - a_cum_s) x_s dt_s
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    seg = (a_cum[..., :, None] - a_cum[..., None, :]).masked_fill(~causal, -math.inf)  # (b, g, h/g, c, T, T)
    scores = Cc @ Bc.transpose(-1, -2)                                               # (b, g, 1, c, T, T)
    y = (scores * torch.exp(seg)) @ xdt                                              # (b, g, h/g, c, T, p)

    # 2. each chunk's contribution to the state at its end: sum_s exp(a_cum_T - a_cum_s) B_s x_s dt_s
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)                                # (b, g, h/g, c, T)
    chunk_states = (Bc * decay_to_end[..., None]).transpose(-1, -2) @ xdt            # (b, g, h/g, c, n, p)

    # 3. pass the state from chunk to chunk; 4. read it out with C, decayed to each position
    chunk_decay = torch.exp(a_cum[..., -1])                                          # (b, g, h/g, c)
    state = torch.zeros_like(chunk_states[:, :, :, 0])                               # (b, g, h/g, n, p)
    starts = []
    for j in range(c):
        starts.append(state)
        state = chunk_decay[..., j, None, None] * state + chunk_states[:, :, :, j]
    start_states = torch.stack(starts, dim=3)                                        # (b, g, h/g, c, n, p)
    y = y + (Cc @ start_states) * torch.exp(a_cum)[..., None]                        # (b, g, h/g, c, T, p)
    return y.permute(0, 3, 4, 1, 2, 5).reshape(b, c * T, h, p)[:, :l]


class GatedRMSNorm(nn.Module):
    """HF MambaRMSNormGated: y * silu(z), normalised over each group of d_in / g channels."""

    def __init__(self, d_in, groups, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_in))
        self.groups, self.eps = groups, eps

    def forward(self, y, z):                                    # (b, l, d_in) each
        y = y * F.silu(z)
        yg = y.view(*y.shape[:-1], self.groups, -1)             # (b, l, g, d_in / g)
        yg = yg * torch.rsqrt(yg.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * yg.view(y.shape)


class Mixer(nn.Module):
    """HF Mamba2Mixer's torch path with the SSD above."""

    def __init__(self, cfg: Mamba2Config):
        super().__init__()
        self.cfg = cfg
        d, d_in, h = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads
        self.in_proj = nn.Linear(d, d_in + cfg.conv_dim + h, bias=False)   # rows: z | xBC | dt
        self.conv1d = nn.Conv1d(cfg.conv_dim, cfg.conv_dim, cfg.conv_kernel, groups=cfg.conv_dim,
                                padding=cfg.conv_kernel - 1, bias=True)
        self.dt_bias = nn.Parameter(torch.zeros(h))
        self.A_log = nn.Parameter(torch.zeros(h))
        self.D = nn.Parameter(torch.ones(h))
        self.norm = GatedRMSNorm(d_in, cfg.n_groups, cfg.layer_norm_epsilon)
        self.out_proj = nn.Linear(d_in, d, bias=False)

    def forward(self, u):                                       # u: (b, l, d)
        cfg = self.cfg
        b, l, _ = u.shape
        d_in, h, gn = cfg.intermediate_size, cfg.num_heads, cfg.n_groups * cfg.state_size
        z, xBC, dt = torch.split(self.in_proj(u), [d_in, cfg.conv_dim, h], dim=-1)
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :l].transpose(1, 2))       # (b, l, conv_dim)
        x, B, C = torch.split(xBC, [d_in, gn, gn], dim=-1)
        dt = F.softplus(dt + self.dt_bias)                      # (b, l, h)
        A = -torch.exp(self.A_log)                              # (h,)
        xh = x.reshape(b, l, h, cfg.head_dim)                   # (b, l, h, p)
        y = ssd(xh, dt, A, B.reshape(b, l, cfg.n_groups, -1), C.reshape(b, l, cfg.n_groups, -1),
                cfg.chunk_size)
        y = y + xh * self.D[:, None]                            # (b, l, h, p)
        return self.out_proj(self.norm(y.reshape(b, l, d_in), z))


class FastMamba2LM(TiedLM):
    """state_dict() keys are HF's Mamba2ForCausalLM's, minus lm_head.weight (tied to backbone.embeddings.weight)."""

    def __init__(self, cfg: Mamba2Config):
        super().__init__(cfg, Mixer)
        self._init_like_mamba_ssm()

    @torch.no_grad()
    def _init_like_mamba_ssm(self):
        """mamba_ssm's Mamba2 and _init_weights: A uniform in [1, 16]; dt log-uniform in [1e-3, 0.1]
        stored as softplus^-1(dt) in dt_bias; D = 1; embeddings N(0, 0.02); in_proj and conv keep
        PyTorch's default (Kaiming-uniform); out_proj Kaiming-uniform / sqrt(n_layer)."""
        cfg = self.cfg
        nn.init.normal_(self.backbone.embeddings.weight, std=0.02)
        for block in self.backbone.layers:
            m = block.mixer
            m.A_log.copy_(torch.log(torch.empty(cfg.num_heads).uniform_(1, 16)))
            m.dt_bias.copy_(dt_bias_init(cfg.num_heads))
            m.out_proj.weight /= math.sqrt(cfg.num_hidden_layers)
