# The SIMD kernels against NumPy's einsum inside Pyodide (run under Node: the same V8 as Chromium),
# on mamba-130m's projection shapes; prints a table.
#   python3 build.py && node bench/run_in_pyodide.mjs --kernels dist/kernels/matmul.wasm bench/kernels.py
# einsum is the page's projection without the kernels (model.py); "call" is the whole
# kernels.project on a 4x32 matrix: the fixed cost a projection pays (~100 per token).
import time

import numpy as np

from mamba_wasm import kernels
from mamba_wasm.packed import Q8Matrix

rng = np.random.default_rng(0)
SHAPES = {"in_proj (3072x768)": (3072, 768), "out_proj (768x1536)": (768, 1536), "x_proj (80x1536)": (80, 1536),
          "lm_head (50280x768)": (50280, 768)}


def seconds(f, repeat):
    f()
    start = time.perf_counter()
    for _ in range(repeat):
        f()
    return (time.perf_counter() - start) / repeat


def q8(out, n_in):
    blocks = np.empty((out * n_in // 32, 34), np.uint8)
    blocks[:, :2] = (rng.random((out * n_in // 32, 1)) * 0.01).astype("<f2").view(np.uint8)
    blocks[:, 2:] = rng.integers(-128, 128, (out * n_in // 32, 32), dtype=np.int8).view(np.uint8)
    return Q8Matrix.from_bytes(blocks.reshape(-1), (out, n_in))


assert kernels.backend() == "wasm-simd128", "run with --kernels"
print("| matrix | l | einsum f32 (ms) | kernel f32 | kernel Q8_0 | f32 speed-up | Q8_0 speed-up |")
print("|---|---:|---:|---:|---:|---:|---:|")
for label, (out, n_in) in SHAPES.items():
    w = rng.standard_normal((out, n_in)).astype(np.float32)
    packed = q8(out, n_in)
    for l in (1, 64) if out * n_in < 10**7 else (1,):
        x = rng.standard_normal(n_in if l == 1 else (l, n_in)).astype(np.float32)
        repeat = max(2, int(2e8 / (out * n_in * l)))
        t_einsum = seconds(lambda: np.einsum("...j,ij->...i", x, w), repeat)
        t = {name: seconds(lambda m=m: kernels.project(x, m), repeat) for name, m in (("f32", w), ("q8", packed))}
        print(f"| {label} | {l} | {t_einsum * 1e3:.3f} | {t['f32'] * 1e3:.3f} | {t['q8'] * 1e3:.3f} "
              f"| {t_einsum / t['f32']:.2f}x | {t_einsum / t['q8']:.2f}x |")
small, x = rng.standard_normal((4, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
print(f"\ncall: kernels.project on 4x32 {seconds(lambda: kernels.project(x, small), 20000) * 1e6:.1f} us; "
      f"einsum {seconds(lambda: np.einsum('...j,ij->...i', x, small), 20000) * 1e6:.1f} us")
