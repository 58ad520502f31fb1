"""Which NumPy formulation of the Mamba-2 step is fastest, measured where it runs.

    node bench/run_in_pyodide.mjs bench/formulations_mamba2.py    # inside Pyodide (the browser's NumPy)
    python3 bench/formulations_mamba2.py                          # natively, for contrast

Shapes are mamba2-130m's (d 768, 24 layers, d_in 1536, h 24 heads of p 64, n 128, g 1, v 50280).
Part 1 times candidate formulations of the step's SSM update and read-out alone; part 2 the
sequence mode's SSM (mamba2._ssd) at several chunk lengths, and with batched matmuls instead of
einsum; part 3 a whole token through mamba_wasm's Mamba-2 and through its Mamba-1 at mamba-130m's
shapes (d_in 1536, n 16), decode and prefill, with random weights. Each candidate runs in interleaved rounds and keeps its best time, so
background load hurts all of them alike. Prints Markdown tables; docs/BENCHMARKS.md quotes them.
"""

import sys
import time

import numpy as np

sys.path.insert(0, "/repo" if sys.platform == "emscripten" else ".")

from mamba_wasm import mamba2  # noqa: E402
from mamba_wasm.config import Mamba2Config, MambaConfig  # noqa: E402
from mamba_wasm.mamba2 import Mamba2  # noqa: E402
from mamba_wasm.model import Mamba  # noqa: E402
from mamba_wasm.weights import LayerWeights, Mamba2LayerWeights, MambaWeights  # noqa: E402

ROUNDS = 3
DISTINCT_LAYERS = 4  # layers cycle through this many weight sets: more than the caches hold, less to build
rng = np.random.default_rng(0)


def f32(*shape, scale=0.05):
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)


def best_ms(candidates, reps):
    """{label: best ms per call}, the candidates taking turns round after round."""
    best = dict.fromkeys(candidates, float("inf"))
    for fn in candidates.values():
        fn()
    for _ in range(ROUNDS):
        for label, fn in candidates.items():
            began = time.perf_counter()
            for _ in range(reps):
                fn()
            best[label] = min(best[label], (time.perf_counter() - began) / reps)
    return {label: seconds * 1e3 for label, seconds in best.items()}


def ssm_update_cases():
    """The step's state update S = exp(dt A) S + dt x B^T and read-out y = S C, S (24, 64, 128)."""
    h_, p, n = 24, 64, 128
    dt, x, A, B, C = np.abs(f32(h_)), f32(h_, p), -np.exp(f32(h_, scale=1.0)), f32(n), f32(n)
    ssm, scratch = f32(h_, p, n), np.empty((h_, p, n), np.float32)

    def broadcast():  # mamba2.py's first version
        ssm[:] *= np.exp(dt * A)[:, None, None]
        ssm[:] += (dt[:, None] * x)[:, :, None] * B
        return np.einsum("hpn,n->hp", ssm, C)

    def out_buffer():
        ssm[:] *= np.exp(dt * A)[:, None, None]
        np.multiply((dt[:, None] * x)[:, :, None], B, out=scratch)
        ssm[:] += scratch
        return np.einsum("hpn,n->hp", ssm, C)

    def matmul_readout():
        ssm[:] *= np.exp(dt * A)[:, None, None]
        np.multiply((dt[:, None] * x)[:, :, None], B, out=scratch)
        ssm[:] += scratch
        return (ssm.reshape(-1, n) @ C).reshape(h_, p)

    def einsum_outer():
        ssm[:] *= np.exp(dt * A)[:, None, None]
        ssm[:] += np.einsum("hp,n->hpn", dt[:, None] * x, B)
        return np.einsum("hpn,n->hp", ssm, C)

    def per_head():  # one (p, n) slab at a time, while it is in cache
        dA, dtx = np.exp(dt * A), dt[:, None] * x
        y = np.empty((h_, p), np.float32)
        for i in range(h_):
            slab = ssm[i]
            slab *= dA[i]
            slab += np.multiply.outer(dtx[i], B, out=scratch[i])
            y[i] = np.einsum("pn,n->p", slab, C)
        return y

    def readout_first():  # y = dA (h_old C) + dt x (B . C): read the old state, then update it
        dA, dtx = np.exp(dt * A), dt[:, None] * x
        y = np.einsum("hpn,n->hp", ssm, C) * dA[:, None] + dtx * np.dot(B, C)
        ssm[:] *= dA[:, None, None]
        np.multiply(dtx[:, :, None], B, out=scratch)
        ssm[:] += scratch
        return y

    flop = 5 * h_ * p * n  # decay, outer product, add, read-out multiply-add
    yield f"SSM update + read-out, S ({h_}, {p}, {n})", flop, {
        "broadcast temporaries": broadcast,
        "out= scratch buffer": out_buffer,
        "out= buffer, matmul read-out": matmul_readout,
        "einsum outer product": einsum_outer,
        "per-head loop (slab in cache)": per_head,
        "read-out before the update": readout_first,
    }


def ssd_matmul(x, dt, A, B, C, state, chunk):
    """mamba2._ssd with its contractions as batched matmuls over (g, j) instead of einsum."""
    l, h, p = x.shape
    g, n = B.shape[1:]
    j = h // g
    y = np.empty_like(x)
    for start in range(0, l, chunk):
        t = slice(start, start + chunk)
        c = x[t].shape[0]
        xs = (x[t] * dt[t, :, None]).reshape(c, g, j, p).transpose(1, 2, 0, 3)  # (g, j, c, p)
        dtA = dt[t] * A
        cum = np.cumsum(dtA, axis=0)  # (c, h)
        decay = np.exp(mamba2._segsum(dtA.T)).reshape(g, j, c, c)
        Cg, Bg = C[t].transpose(1, 0, 2), B[t].transpose(1, 0, 2)  # (g, c, n)
        y_chunk = ((Cg @ Bg.transpose(0, 2, 1))[:, None] * decay) @ xs  # (g, j, c, p)
        grouped = state.reshape(g, j, p, n)
        y_chunk += (Cg[:, None] @ grouped.transpose(0, 1, 3, 2)) * np.exp(cum).T.reshape(g, j, c, 1)
        to_end = np.exp(cum[-1] - cum).T.reshape(g, j, c, 1)
        grouped *= np.exp(cum[-1]).reshape(g, j, 1, 1)
        grouped += (xs * to_end).transpose(0, 1, 3, 2) @ Bg[:, None]  # (g, j, p, n)
        y[t] = y_chunk.transpose(2, 0, 1, 3).reshape(c, h, p)
    return y


def ssd_cases():
    """The sequence mode's SSM over SSD_LENGTH tokens of one layer: chunk lengths, einsum or matmul."""
    h_, p, n = 24, 64, 128
    x, dt, A = f32(SSD_LENGTH, h_, p), np.abs(f32(SSD_LENGTH, h_)), -np.exp(f32(h_, scale=1.0))
    B, C = f32(SSD_LENGTH, 1, n), f32(SSD_LENGTH, 1, n)
    reference = mamba2._ssd(x, dt, A, B, C, np.zeros((h_, p, n), np.float32))
    error = np.abs(ssd_matmul(x, dt, A, B, C, np.zeros((h_, p, n), np.float32), 64) - reference).max()
    assert error <= 1e-4 * np.abs(reference).max(), error

    def einsum_at(chunk):
        def run():
            mamba2.SSD_CHUNK = chunk
            return mamba2._ssd(x, dt, A, B, C, np.zeros((h_, p, n), np.float32))
        return run

    candidates = {f"einsum, chunk {chunk}": einsum_at(chunk) for chunk in (16, 32, 64, 128, 256)}
    for chunk in (32, 64):
        candidates[f"matmul, chunk {chunk}"] = (
            lambda chunk=chunk: ssd_matmul(x, dt, A, B, C, np.zeros((h_, p, n), np.float32), chunk))
    yield f"SSD over {SSD_LENGTH} tokens, S ({h_}, {p}, {n}) (per token)", 0, candidates


def contraction_cases():
    """The SSD chunk's two big contractions in several layouts, one chunk of SSD_CHUNK tokens, g 1."""
    h_, p, n, c = 24, 64, 128, mamba2.SSD_CHUNK
    C, B, xs, state = f32(c, 1, n), f32(c, 1, n), f32(c, 1, h_, p), f32(1, h_, p, n)
    Bt, xst = np.ascontiguousarray(B.transpose(1, 2, 0)), np.ascontiguousarray(xs.transpose(1, 2, 3, 0))
    yield f"C . state, ({c}, {n}) by ({h_}, {p}, {n})", 2 * c * h_ * p * n, {
        "einsum lgn,gjpn->lgjp": lambda: np.einsum("lgn,gjpn->lgjp", C, state),
        "matmul (l, n) @ (h*p, n).T": lambda: C[:, 0] @ state.reshape(-1, n).T,
        "einsum ln,kn->lk (2-D)": lambda: np.einsum("ln,kn->lk", C[:, 0], state.reshape(-1, n)),
    }
    yield f"chunk state, ({c}, {n}) by ({c}, {h_}, {p})", 2 * c * h_ * p * n, {
        "einsum sgn,sgjp->gjpn": lambda: np.einsum("sgn,sgjp->gjpn", B, xs),
        "einsum on time-last copies": lambda: np.einsum("gjps,gns->gjpn", np.ascontiguousarray(xs.transpose(1, 2, 3, 0)),
                                                        np.ascontiguousarray(B.transpose(1, 2, 0))),
        "einsum, time-last (copies free)": lambda: np.einsum("gjps,gns->gjpn", xst, Bt),
        "matmul (h*p, l) @ (l, n)": lambda: xs.reshape(c, -1).T @ B[:, 0],
    }


def mamba1_130m():
    c = MambaConfig(d_model=768, n_layer=24, vocab_size=50280, d_state=16, d_conv=4, expand=2, d_inner=1536,
                    dt_rank=48, norm_eps=1e-5, proj_bias=False, conv_bias=True, tie_embeddings=True, layout="hf")
    layers = [LayerWeights(
        norm=1 + f32(c.d_model), in_proj=f32(2 * c.d_inner, c.d_model), in_proj_bias=None,
        conv=f32(c.d_inner, c.d_conv), conv_bias=f32(c.d_inner), x_proj=f32(c.dt_rank + 2 * c.d_state, c.d_inner),
        dt_proj=f32(c.d_inner, c.dt_rank), dt_proj_bias=f32(c.d_inner) - 3, A=-np.exp(f32(c.d_inner, c.d_state)),
        D=f32(c.d_inner), out_proj=f32(c.d_model, c.d_inner), out_proj_bias=None,
    ) for _ in range(DISTINCT_LAYERS)]
    return Mamba(c, _weights(c, layers))


def mamba2_130m():
    c = Mamba2Config(d_model=768, n_layer=24, vocab_size=50280, d_state=128, d_conv=4, expand=2, d_inner=1536,
                     n_heads=24, head_dim=64, n_groups=1, chunk_size=256, dt_limit=(0.0, float("inf")),
                     norm_eps=1e-5, gated_norm_eps=1e-5, proj_bias=False, conv_bias=True, tie_embeddings=True,
                     layout="hf")
    rows = c.d_inner + c.conv_dim + c.n_heads
    layers = [Mamba2LayerWeights(
        norm=1 + f32(c.d_model), in_proj=f32(rows, c.d_model), in_proj_bias=None, conv=f32(c.conv_dim, c.d_conv),
        conv_bias=f32(c.conv_dim), dt_bias=f32(c.n_heads) - 3, A=-np.exp(f32(c.n_heads)), D=f32(c.n_heads),
        gated_norm=1 + f32(c.d_inner), out_proj=f32(c.d_model, c.d_inner), out_proj_bias=None,
    ) for _ in range(DISTINCT_LAYERS)]
    return Mamba2(c, _weights(c, layers))


def _weights(c, layers):
    embedding = EMBEDDING if EMBEDDING.shape == (c.vocab_size, c.d_model) else f32(c.vocab_size, c.d_model)
    return MambaWeights(embedding=embedding, layers=tuple(layers[i % len(layers)] for i in range(c.n_layer)),
                        norm_f=1 + f32(c.d_model), lm_head=embedding)


def whole_token_cases():
    """One token's step, and a 128-token prefill per token, through both architectures in turn."""
    models = {"Mamba-1 (mamba-130m shapes)": mamba1_130m(), "Mamba-2 (mamba2-130m shapes)": mamba2_130m()}
    states = {name: model.new_state() for name, model in models.items()}
    prompt = [int(t) for t in rng.integers(0, 50000, PREFILL_LENGTH)]
    yield "decode: one token", 0, {
        name: lambda m=model, s=states[name]: m.step(int(rng.integers(0, 50000)), s) for name, model in models.items()
    }
    yield f"prefill: {PREFILL_LENGTH} tokens, per token", 0, {
        name: lambda m=model: m.prefill(prompt, m.new_state()) for name, model in models.items()
    }


EMBEDDING = f32(50280, 768)
PREFILL_LENGTH = 64
SSD_LENGTH = 256


def main():
    platform = "Pyodide " + sys.version.split()[0] if sys.platform == "emscripten" else "native " + sys.version.split()[0]
    print(f"NumPy {np.__version__}, {platform}\n")
    print("| operation | formulation | ms | GFLOP/s |")
    print("|---|---|---:|---:|")
    parts = {"step": ssm_update_cases, "ssd": ssd_cases, "contractions": contraction_cases, "model": whole_token_cases}
    chosen = [part for part in sys.argv[1:] if part in parts] or list(parts)  # a subset by name
    for cases in (parts[part]() for part in chosen):
        for name, flop, candidates in cases:
            per = PREFILL_LENGTH if name.startswith("prefill") else SSD_LENGTH if name.startswith("SSD") else 1
            reps = 1 if per > 1 else 5 if name.startswith("decode") else 20
            for label, ms in best_ms(candidates, reps).items():
                ms /= per
                rate = f"{flop / ms / 1e6:.2f}" if flop else ""
                print(f"| {name} | {label} | {ms:.3f} | {rate} |", flush=True)


main()
