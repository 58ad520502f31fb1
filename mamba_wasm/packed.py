"""Weight matrices kept in a .gguf file's own 8-bit form (Q8_0) instead of float32.

In the browser the projections stream every weight from memory once per token, so a matrix of int8
plus one float16 scale per 32 numbers (1.0625 bytes a number) is read 3.8x faster than float32, and
takes that much less memory; the SIMD kernels (web/kernels/matmul.wat, kernels.py) multiply it without
making a float32 copy. The loader keeps matrices packed only when asked
(gguf_checkpoint.load_gguf_model(packed=True): the worker asks when the kernels run).

F16 matrices are not kept: widening every half to float32 inside the dot product cost more than
reading twice the bytes, so an F16 kernel decoded slower than the float32 one on the same model
(10.6 against 14.3 tok/s, mamba-130m-shaped, docs/BENCHMARKS.md); they are widened once at load
(exact) and take float32's memory.

Q8Matrix stands where a float32 (out, in) array stands in MambaWeights: `_project` (model.py)
multiplies by it, `matrix[ids]` gives float32 rows (the embedding lookup of a tied lm_head), and
`.shape`, `.size`, `.nbytes` are those of the stored form. Natively (tests, command line) it
multiplies through NumPy by dequantizing first: exact, but slow for big matrices, so the native
loader leaves matrices unpacked. It is a view of the file's bytes: keeping it packed costs no copy.
"""

from dataclasses import dataclass

import numpy as np

from .gguf_quants import GGML_TYPES, dequantize

Q8_0 = GGML_TYPES[8]


@dataclass(frozen=True, eq=False)
class Q8Matrix:
    """GGUF Q8_0 as the file stores it: each row of `in` numbers is in / 32 blocks of 34 bytes, a
    float16 scale d then 32 int8 q, and W[r, 32 b + j] = d * q[j] of block b of row r."""

    blocks: np.ndarray  # (out, in / 32, 34) uint8, C-contiguous: a view of the file's bytes, no copy

    @classmethod
    def from_bytes(cls, raw, shape):
        """A tensor's Q8_0 bytes (uint8, exactly out * in / 32 * 34 of them) as an (out, in) matrix."""
        out, n_in = shape
        return cls(blocks=raw.reshape(out, n_in // Q8_0.block_size, Q8_0.type_size))

    shape = property(lambda self: (self.blocks.shape[0], self.blocks.shape[1] * Q8_0.block_size))
    size = property(lambda self: self.shape[0] * self.shape[1])
    ndim = 2
    nbytes = property(lambda self: self.blocks.nbytes)

    def all_finite(self):
        return bool(np.isfinite(self.blocks[:, :, :2].copy().view("<f2")).all())

    def __getitem__(self, rows):
        """Rows as float32, decoded as gguf_quants.dequantize decodes them (the same numbers): an
        int gives (in,), an array of ids (l, in)."""
        blocks = self.blocks[rows]  # (in / 32, 34) or (l, in / 32, 34)
        return dequantize(blocks.reshape(-1), Q8_0, blocks.shape[:-2] + (self.shape[1],))

    def dequantize(self):
        """The float32 (out, in) matrix."""
        return self[slice(None)]


def project_dequantized(x, weight):
    """x (..., in) by a packed weight (out, in) through NumPy: (..., out). The reference the
    kernels are tested against, and the path where no kernel runs."""
    w = weight.dequantize()  # (out, in) float32
    return w @ x if x.ndim == 1 else x @ w.T
