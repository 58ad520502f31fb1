"""Random float32 weights for a given MambaConfig or Mamba2Config, for tests that need a model but no checkpoint."""

import numpy as np

from mamba_wasm.config import Mamba2Config, MambaConfig
from mamba_wasm.weights import LayerWeights, Mamba2LayerWeights, MambaWeights


def _normal(seed):
    """rand(*shape, scale): float32 normal draws from one generator seeded with `seed`."""
    rng = np.random.default_rng(seed)

    def rand(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return rand


def _model(c, rand, layer):
    """The whole model around `layer()` (which makes one layer's weights), drawing in a fixed order."""
    embedding = rand(c.vocab_size, c.d_model, scale=1.0)
    return MambaWeights(
        embedding=embedding,
        layers=tuple(layer() for _ in range(c.n_layer)),
        norm_f=1 + rand(c.d_model, scale=0.1),
        lm_head=embedding if c.tie_embeddings else rand(c.vocab_size, c.d_model),
    )


def tiny_config(**overrides):
    fields = dict(d_model=16, n_layer=2, vocab_size=40, d_state=4, d_conv=4, expand=2, d_inner=32, dt_rank=2,
                  norm_eps=1e-5, proj_bias=True, conv_bias=True, tie_embeddings=False, layout="hf")
    fields.update(overrides)
    return MambaConfig(**fields)


def random_weights(config, seed=0):
    rand = _normal(seed)
    c = config

    def layer():
        return LayerWeights(
            norm=1 + rand(c.d_model, scale=0.1),
            in_proj=rand(2 * c.d_inner, c.d_model),
            in_proj_bias=rand(2 * c.d_inner) if c.proj_bias else None,
            conv=rand(c.d_inner, c.d_conv),
            conv_bias=rand(c.d_inner) if c.conv_bias else None,
            x_proj=rand(c.dt_rank + 2 * c.d_state, c.d_inner),
            dt_proj=rand(c.d_inner, c.dt_rank),
            dt_proj_bias=rand(c.d_inner) - 2,
            A=-np.exp(rand(c.d_inner, c.d_state, scale=1.0)),
            D=rand(c.d_inner),
            out_proj=rand(c.d_model, c.d_inner),
            out_proj_bias=rand(c.d_model) if c.proj_bias else None,
        )

    return _model(c, rand, layer)


def tiny_mamba2_config(**overrides):
    fields = dict(d_model=16, n_layer=2, vocab_size=40, d_state=8, d_conv=4, expand=2, d_inner=32, n_heads=8,
                  head_dim=4, n_groups=2, chunk_size=256, dt_limit=(0.0, float("inf")), norm_eps=1e-5,
                  gated_norm_eps=1e-5, proj_bias=True, conv_bias=True, tie_embeddings=False, layout="hf")
    fields.update(overrides)
    return Mamba2Config(**fields)


def random_mamba2_weights(config, seed=0):
    rand = _normal(seed)
    c = config
    rows = c.d_inner + c.conv_dim + c.n_heads  # in_proj: z, xBC, dt

    def layer():
        return Mamba2LayerWeights(
            norm=1 + rand(c.d_model, scale=0.1),
            in_proj=rand(rows, c.d_model),
            in_proj_bias=rand(rows) if c.proj_bias else None,
            conv=rand(c.conv_dim, c.d_conv),
            conv_bias=rand(c.conv_dim) if c.conv_bias else None,
            dt_bias=rand(c.n_heads) - 2,
            A=-np.exp(rand(c.n_heads, scale=1.0)),
            D=rand(c.n_heads),
            gated_norm=1 + rand(c.d_inner, scale=0.1),
            out_proj=rand(c.d_model, c.d_inner),
            out_proj_bias=rand(c.d_model) if c.proj_bias else None,
        )

    return _model(c, rand, layer)
