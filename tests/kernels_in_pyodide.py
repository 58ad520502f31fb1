# Run in Pyodide under Node with the SIMD kernels installed (tests/test_kernels_pyodide.py):
#   node bench/run_in_pyodide.mjs --kernels dist/kernels/matmul.wasm tests/kernels_in_pyodide.py
# Every projection the kernels take (float32, Q8_0; odd shapes: tails, one row, l = 1 and
# l > 1, unaligned and non-contiguous inputs) against NumPy on the dequantized float32 matrix.
# Prints one JSON line: {"backend": the projections' backend, case: its largest relative error}.
import json

import numpy as np

from mamba_wasm import kernels
from mamba_wasm.model import _project
from mamba_wasm.packed import Q8Matrix

rng = np.random.default_rng(0)


def q8_bytes(out, n_in):
    """Random GGUF Q8_0 bytes: a float16 scale, then 32 int8, per block."""
    blocks = np.empty((out * n_in // 32, 34), np.uint8)
    blocks[:, :2] = (rng.random((out * n_in // 32, 1)) * 0.02 + 0.001).astype("<f2").view(np.uint8)
    blocks[:, 2:] = rng.integers(-128, 128, (out * n_in // 32, 32), dtype=np.int8).view(np.uint8)
    return blocks.reshape(-1)


def relative_error(y, x, w):
    """The largest error over the sum of |x_c w_rc| of its output: rounding's own scale (a sum that
    cancels to near 0 has the same rounding error as one that does not)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    return float((np.abs(y - x @ w.T) / np.maximum(np.abs(x) @ np.abs(w).T, 1e-30)).max())


def q8_rounding_bound(x, w):
    """How far matmul_q8 may be from x @ w.T because it rounds x to 16 bits per block of 32 (scale
    s = max |x| / 32767, each number within s / 2): sum over blocks of s / 2 * sum |w|, (..., out)."""
    x, w = np.atleast_2d(x).astype(np.float64), np.abs(w.astype(np.float64))
    blocks = x.shape[-1] // 32
    s = np.abs(x).reshape(x.shape[0], blocks, 32).max(axis=-1) / 32767  # (l, blocks)
    return (s / 2) @ w.reshape(w.shape[0], blocks, 32).sum(axis=-1).T  # (l, out)


results = {"backend": kernels.backend()}
for out, n_in in [(1, 1), (1, 32), (3, 5), (7, 17), (5, 64), (33, 96), (64, 100), (257, 768)]:
    for l in (None, 1, 3, 70):
        x = rng.standard_normal(n_in if l is None else (l, n_in)).astype(np.float32)
        weights = {"f32": rng.standard_normal((out, n_in)).astype(np.float32)}
        if n_in % 32 == 0:
            weights["q8_0"] = Q8Matrix.from_bytes(q8_bytes(out, n_in), (out, n_in))
        for kind, w in weights.items():
            dense = w if kind == "f32" else w.dequantize()
            y = kernels.project(x, w)
            assert y is not None and y.shape == x.shape[:-1] + (out,) and y.dtype == np.float32, (kind, out, n_in, l)
            if kind == "q8_0":  # the error past the rounding of x the kernel owns to, on rounding's scale
                y64 = np.atleast_2d(y).astype(np.float64)
                exact = np.atleast_2d(x).astype(np.float64) @ dense.astype(np.float64).T
                excess = np.maximum(np.abs(y64 - exact) - q8_rounding_bound(x, dense), 0)
                scale = np.abs(np.atleast_2d(x)).astype(np.float64) @ np.abs(dense.astype(np.float64)).T
                results[f"{kind} {out}x{n_in} l={l}"] = float((excess / np.maximum(scale, 1e-30)).max())
                results[f"{kind} {out}x{n_in} l={l} (x rounded)"] = relative_error(y, x, dense)
            else:
                results[f"{kind} {out}x{n_in} l={l}"] = relative_error(y, x, dense)

# the model's own entry point, on a non-contiguous x (a column slice) and an unaligned weight
w = rng.standard_normal((40, 48)).astype(np.float32)
x = rng.standard_normal((6, 60)).astype(np.float32)[:, :48]
results["_project non-contiguous x"] = relative_error(_project(x, w), x, w)
unaligned = np.empty(40 * 48 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(40, 48)  # one byte off
unaligned[:] = w
x = x.copy()
results["f32 unaligned weight"] = relative_error(kernels.project(x, unaligned), x, w)

# a weight's address is kept by id: a new array at a dead one's id must not use its entry
x = rng.standard_normal(16).astype(np.float32)
for size in range(20, 60):
    w = rng.standard_normal((size, 16)).astype(np.float32)
    error = relative_error(kernels.project(x, w), x, w)
    results["f32 weights made and dropped"] = max(results.get("f32 weights made and dropped", 0.0), error)
    del w
print(json.dumps(results))
