"""What the two fast CPU training paths (fast_mamba.py, fast_mamba2.py) share: HF's RMSNorm, the
pre-norm residual block, the backbone and a language model whose head is tied to the embedding.

Training only: torch is a dev dependency here and the mamba_wasm package never imports this file.
Names: b batch size, l sequence length, d d_model (hidden_size), v vocab size.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    """HF MambaRMSNorm / Mamba2RMSNorm (the same computation)."""

    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Block(nn.Module):
    """HF MambaBlock / Mamba2Block: x + mixer(norm(x))."""

    def __init__(self, cfg, new_mixer):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.mixer = new_mixer(cfg)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class Backbone(nn.Module):
    def __init__(self, cfg, new_mixer):
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, new_mixer) for _ in range(cfg.num_hidden_layers))
        self.norm_f = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)


class TiedLM(nn.Module):
    """state_dict() keys are HF's, minus lm_head.weight (tied to backbone.embeddings.weight).
    Subclasses pass their mixer class and initialise the weights."""

    def __init__(self, cfg, new_mixer):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg, new_mixer)

    def forward(self, ids):                                     # ids: (b, l) -> logits (b, l, v)
        x = self.backbone.embeddings(ids)
        for block in self.backbone.layers:
            x = block(x)
        x = self.backbone.norm_f(x)
        return F.linear(x, self.backbone.embeddings.weight)

    def hf_state_dict(self):
        """Tensors for model.safetensors, named exactly as transformers' *ForCausalLM expects."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}


def dt_bias_init(size):
    """softplus^-1(dt) for dt log-uniform in [1e-3, 0.1] (floored at 1e-4), as mamba_ssm and HF
    initialise the time step bias: softplus(bias) then starts at dt."""
    dt = torch.exp(torch.rand(size) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))
