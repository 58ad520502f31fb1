"""The model's parameters as float32 NumPy arrays, named by role rather than by checkpoint key.

Dimension names (see model.py): d d_model, d_in d_inner, n d_state, k d_conv, r dt_rank, v vocab;
Mamba-2 adds (see mamba2.py) h heads, p head_dim, g groups, e = d_in + 2*g*n conv channels.
Matrices keep PyTorch's nn.Linear orientation (out_features, in_features), so `W @ x` is a
row-by-row dot product: the fastest mat-vec in Pyodide's BLAS-less NumPy.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class LayerWeights:
    norm: np.ndarray  # (d,) RMSNorm scale before the mixer
    in_proj: np.ndarray  # (2*d_in, d): rows [:d_in] give x, rows [d_in:] the gate z
    in_proj_bias: Optional[np.ndarray]  # (2*d_in,)
    conv: np.ndarray  # (d_in, k) depthwise causal convolution, oldest tap first
    conv_bias: Optional[np.ndarray]  # (d_in,)
    x_proj: np.ndarray  # (r + 2*n, d_in): rows give dt_low (r), B (n), C (n)
    dt_proj: np.ndarray  # (d_in, r)
    dt_proj_bias: np.ndarray  # (d_in,)
    A: np.ndarray  # (d_in, n) = -exp(A_log), precomputed once at load
    D: np.ndarray  # (d_in,) skip connection
    out_proj: np.ndarray  # (d, d_in)
    out_proj_bias: Optional[np.ndarray]  # (d,)


@dataclass(frozen=True)
class Mamba2LayerWeights:
    norm: np.ndarray  # (d,) RMSNorm scale before the mixer
    in_proj: np.ndarray  # (d_in + e + h, d): rows give the gate z (d_in), xBC (e), dt (h)
    in_proj_bias: Optional[np.ndarray]  # (d_in + e + h,)
    conv: np.ndarray  # (e, k) depthwise causal convolution over x, B and C, oldest tap first
    conv_bias: Optional[np.ndarray]  # (e,)
    dt_bias: np.ndarray  # (h,)
    A: np.ndarray  # (h,) = -exp(A_log), precomputed once at load: one scalar decay per head
    D: np.ndarray  # (h,) skip connection, one per head
    gated_norm: np.ndarray  # (d_in,) scale of the gated RMSNorm before out_proj
    out_proj: np.ndarray  # (d, d_in)
    out_proj_bias: Optional[np.ndarray]  # (d,)


@dataclass(frozen=True)
class MambaWeights:
    embedding: np.ndarray  # (v, d)
    layers: tuple  # n_layer LayerWeights (Mamba-1) or Mamba2LayerWeights
    norm_f: np.ndarray  # (d,)
    lm_head: np.ndarray  # (v, d); the embedding array itself when tied

    @property
    def n_params(self):
        """Count each distinct array once, so a tied lm_head is not counted twice."""
        seen = {}
        for array in _arrays(self):
            seen[id(array)] = array.size
        return sum(seen.values())


def _arrays(weights):
    yield weights.embedding
    yield weights.norm_f
    yield weights.lm_head
    for layer in weights.layers:
        for value in vars(layer).values():
            if value is not None:
                yield value
