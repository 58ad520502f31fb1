"""Random float32 weights for a given MambaConfig, for tests that need a model but no checkpoint."""

import numpy as np

from mamba_wasm.config import MambaConfig
from mamba_wasm.weights import LayerWeights, MambaWeights


def tiny_config(**overrides):
    fields = dict(d_model=16, n_layer=2, vocab_size=40, d_state=4, d_conv=4, expand=2, d_inner=32, dt_rank=2,
                  norm_eps=1e-5, proj_bias=True, conv_bias=True, tie_embeddings=False, layout="hf")
    fields.update(overrides)
    return MambaConfig(**fields)


def random_weights(config, seed=0):
    rng = np.random.default_rng(seed)
    c = config

    def rand(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

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

    embedding = rand(c.vocab_size, c.d_model, scale=1.0)
    return MambaWeights(
        embedding=embedding,
        layers=tuple(layer() for _ in range(c.n_layer)),
        norm_f=1 + rand(c.d_model, scale=0.1),
        lm_head=embedding if c.tie_embeddings else rand(c.vocab_size, c.d_model),
    )
