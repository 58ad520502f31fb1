"""Which NumPy formulation of each hot operation is fastest, measured where it runs.

    node bench/run_in_pyodide.mjs bench/formulations.py    # inside Pyodide (the browser's NumPy)
    python3 bench/formulations.py                          # natively, for contrast

Shapes are mamba-130m's (d 768, d_in 1536, n 16, r 48, v 50280). Each candidate runs in
interleaved rounds and keeps its best time, so background load hurts all of them alike.
Prints a Markdown table; docs/BENCHMARKS.md quotes it.
"""

import sys
import time

import numpy as np

ROUNDS = 3
rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape, dtype=np.float32)


def best_ms(fn, reps):
    fn()
    best = float("inf")
    for _ in range(ROUNDS):
        began = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - began) / reps)
    return best * 1e3


def matvec_cases():
    for m, n in ((3072, 768), (768, 1536), (50280, 768)):
        W, x = f32(m, n), f32(n)
        Wt = np.ascontiguousarray(W.T)
        flop = 2 * m * n
        yield f"mat-vec {m}x{n}", flop, {
            "W @ x": lambda: W @ x,
            "np.dot(W, x)": lambda: np.dot(W, x),
            "einsum('ij,j->i')": lambda: np.einsum("ij,j->i", W, x),
            "einsum(optimize=True)": lambda: np.einsum("ij,j->i", W, x, optimize=True),
            "x @ W.T (pre-transposed)": lambda: x @ Wt,
        }


def matmul_cases():
    l = 64
    for m, n in ((3072, 768), (768, 1536)):
        W, X = f32(m, n), f32(l, n)
        Wt = np.ascontiguousarray(W.T)
        flop = 2 * m * n * l
        yield f"prefill ({l}x{n})·W.T, W {m}x{n}", flop, {
            "X @ W.T": lambda: X @ W.T,
            "X @ Wt (pre-transposed)": lambda: X @ Wt,
            "einsum('lj,ij->li')": lambda: np.einsum("lj,ij->li", X, W),
            "row loop of einsum mat-vecs": lambda: np.stack([np.einsum("ij,j->i", W, x) for x in X]),
        }


def ssm_update_cases():
    d_in, n = 1536, 16
    dt, x, A, B, C = f32(d_in) ** 2, f32(d_in), -np.exp(f32(d_in, n)), f32(n), f32(n)
    h, tmp = np.zeros((d_in, n), np.float32), np.empty((d_in, n), np.float32)

    def temporaries():
        dA = np.exp(dt[:, None] * A)
        return (dA * h + (dt * x)[:, None] * B) @ C

    def in_place():
        h[:] *= np.exp(dt[:, None] * A)
        h[:] += (dt * x)[:, None] * B
        return h @ C

    def out_buffers():
        np.multiply(dt[:, None], A, out=tmp)
        np.exp(tmp, out=tmp)
        h[:] *= tmp
        np.multiply((dt * x)[:, None], B, out=tmp)
        h[:] += tmp
        return np.einsum("in,n->i", h, C)

    yield f"SSM update, h ({d_in}, {n})", 0, {
        "fresh temporaries": temporaries,
        "in place (h *=, h +=)": in_place,
        "preallocated out= buffers": out_buffers,
    }


def main():
    platform = "Pyodide " + sys.version.split()[0] if sys.platform == "emscripten" else "native " + sys.version.split()[0]
    print(f"NumPy {np.__version__}, {platform}\n")
    print("| operation | formulation | ms | GFLOP/s |")
    print("|---|---|---:|---:|")
    for cases in (matvec_cases(), matmul_cases(), ssm_update_cases()):
        for name, flop, candidates in cases:
            reps = 3 if flop > 5e7 else 20
            for label, fn in candidates.items():
                ms = best_ms(fn, reps)
                rate = f"{flop / ms / 1e6:.2f}" if flop else ""
                print(f"| {name} | {label} | {ms:.3f} | {rate} |")


main()
