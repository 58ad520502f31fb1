"""A fast CPU training path for Mamba-1, with parameter names identical to HF's MambaForCausalLM.

Training only: torch is a dev dependency here and the mamba_wasm package never imports this file.

Glossary (the names used below):
    b  batch size          l  sequence length     d  d_model (hidden_size)
    d_in  expand * d       n  d_state             k  d_conv (conv_kernel)
    r  dt_rank             v  vocab size

Why a separate module: HF's pure-PyTorch Mamba ("slow_forward") materialises the discretised
(b, d_in, l, n) tensors and runs a Python loop over time, so it trains at ~550 tokens/s here.
Here the causal depthwise conv (+ silu) and the selective scan (+ softplus, D skip and silu(z)
gate, as in mamba_ssm's selective_scan_fn) are small C kernels, compiled with gcc on first use
(cached under .cache/fast_mamba), loaded with ctypes and parallel over batch/channels with OpenMP.
Both loop over blocks of 16 adjacent channels innermost (one SIMD instruction per operation,
contiguous loads). The scan keeps the state h (n x 16 floats per block) in registers / L1:
    forward:  h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t;   y_t = <h_t, C_t>
    backward: per block, recompute h_0..h_l into a buffer ((l+1) * n * 16 floats, in L2), then
              run the adjoint recurrence backwards in time (dh_{t-1} = exp(delta_t * A) * dh_t).
Everything else (projections, norms, loss) is ordinary PyTorch autograd. Tensors stay time-major
(b, l, d_in), as nn.Linear produces them, so no transposes are needed.

Mirrors transformers.models.mamba.modeling_mamba: MambaRMSNorm, MambaMixer (slow path:
in_proj -> causal depthwise conv -> silu -> x_proj -> dt_proj + softplus -> scan -> + D*u ->
* silu(z) -> out_proj), MambaBlock (pre-norm residual, residual in fp32), MambaModel and a
tied lm_head.
"""

import ctypes
import hashlib
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from fast_lm import TiedLM, dt_bias_init

# ---------------------------------------------------------------------------------------------
# The selective-scan kernel
# ---------------------------------------------------------------------------------------------

_KERNELS_C = r"""
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Channels are processed in blocks of CB adjacent channels, the innermost loop, so every
   per-channel operation is one SIMD instruction and every load of a (b, l, d_in) tensor is
   contiguous. d_in must be a multiple of CB (checked by the caller). */
#define CB 16

static inline float sigm(float x) { return 1.f / (1.f + expf(-x)); }
static inline float softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }

/* Causal depthwise conv + silu, time-major: x (b, l, .) with row stride sx (a view of in_proj's
   output), wt (k, d_in) (taps transposed by the caller), bias (d_in); u (b, l, d_in). */
void conv_fwd(const float *x, long sx, const float *wt, const float *bias, float *u,
              int b, int d_in, int l, int k) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int ib = 0; ib < b; ib++)
        for (int t = 0; t < l; t++) {
            float *ut = u + ((long)ib * l + t) * d_in;
            for (int c0 = 0; c0 < d_in; c0 += CB) {
                float acc[CB];
                #pragma omp simd
                for (int j = 0; j < CB; j++) acc[j] = bias[c0 + j];
                for (int q = 0; q < k; q++) {
                    int ts = t - (k - 1) + q;
                    if (ts < 0) continue;
                    const float *xs = x + ((long)ib * l + ts) * sx + c0, *wq = wt + (long)q * d_in + c0;
                    #pragma omp simd
                    for (int j = 0; j < CB; j++) acc[j] += wq[j] * xs[j];
                }
                #pragma omp simd
                for (int j = 0; j < CB; j++) ut[c0 + j] = acc[j] * sigm(acc[j]);
            }
        }
}

/* du (b, l, d_in) -> dx (b, l, d_in) (zeroed by the caller), dwt (k, d_in), dbias (d_in).
   Parallel over channel blocks: each thread owns its channels' dwt, dbias, dx. */
void conv_bwd(const float *x, long sx, const float *wt, const float *bias, const float *du,
              float *dx, float *dwt, float *dbias, int b, int d_in, int l, int k) {
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < d_in; c0 += CB) {
        float dw[16][CB], db[CB];
        for (int q = 0; q < k; q++) for (int j = 0; j < CB; j++) dw[q][j] = 0.f;
        for (int j = 0; j < CB; j++) db[j] = 0.f;
        for (int ib = 0; ib < b; ib++)
            for (int t = 0; t < l; t++) {
                float acc[CB], g[CB];
                const float *dut = du + ((long)ib * l + t) * d_in + c0;
                #pragma omp simd
                for (int j = 0; j < CB; j++) acc[j] = bias[c0 + j];
                for (int q = 0; q < k; q++) {
                    int ts = t - (k - 1) + q;
                    if (ts < 0) continue;
                    const float *xs = x + ((long)ib * l + ts) * sx + c0, *wq = wt + (long)q * d_in + c0;
                    #pragma omp simd
                    for (int j = 0; j < CB; j++) acc[j] += wq[j] * xs[j];
                }
                #pragma omp simd
                for (int j = 0; j < CB; j++) {
                    float s = sigm(acc[j]);
                    g[j] = dut[j] * s * (1.f + acc[j] * (1.f - s));  /* silu' */
                    db[j] += g[j];
                }
                for (int q = 0; q < k; q++) {
                    int ts = t - (k - 1) + q;
                    if (ts < 0) continue;
                    const float *xs = x + ((long)ib * l + ts) * sx + c0, *wq = wt + (long)q * d_in + c0;
                    float *dxs = dx + ((long)ib * l + ts) * d_in + c0;
                    #pragma omp simd
                    for (int j = 0; j < CB; j++) {
                        dw[q][j] += g[j] * xs[j];
                        dxs[j] += g[j] * wq[j];
                    }
                }
            }
        for (int q = 0; q < k; q++) for (int j = 0; j < CB; j++) dwt[(long)q * d_in + c0 + j] = dw[q][j];
        for (int j = 0; j < CB; j++) dbias[c0 + j] = db[j];
    }
}

/* The selective scan with HF's surrounding elementwise ops fused in (as mamba_ssm's
   selective_scan_fn with D, z, delta_bias, delta_softplus=True):
     delta = softplus(dr + dt_bias);  h_t = exp(delta*A) h_{t-1} + delta*u*B_t;
     y_t = (<h_t, C_t> + D*u) * silu(z_t)
   Time-major: u, dr, y (b, l, d_in) contiguous; z (b, l, .) with row stride sz; B, C (b, l, n);
   At (n, d_in) = A transposed. State per block: h[n][CB], in registers/L1. */
void scan_fwd(const float *u, const float *dr, const float *dt_bias, const float *At,
              const float *Bm, const float *Cm, const float *D, const float *z, long sz,
              float *y, int b, int d_in, int l, int n) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int ib = 0; ib < b; ib++)
        for (int c0 = 0; c0 < d_in; c0 += CB) {
            float h[64][CB];
            for (int s = 0; s < n; s++) for (int j = 0; j < CB; j++) h[s][j] = 0.f;
            for (int t = 0; t < l; t++) {
                const long i = ((long)ib * l + t) * d_in + c0;
                const float *Bt = Bm + ((long)ib * l + t) * n, *Ct = Cm + ((long)ib * l + t) * n;
                const float *zt = z + ((long)ib * l + t) * sz + c0;
                float dt[CB], dtu[CB], acc[CB];
                #pragma omp simd
                for (int j = 0; j < CB; j++) {
                    dt[j] = softplus(dr[i + j] + dt_bias[c0 + j]);
                    dtu[j] = dt[j] * u[i + j];
                    acc[j] = 0.f;
                }
                for (int s = 0; s < n; s++) {
                    const float bs = Bt[s], cs = Ct[s], *As = At + (long)s * d_in + c0;
                    #pragma omp simd
                    for (int j = 0; j < CB; j++) {
                        h[s][j] = expf(dt[j] * As[j]) * h[s][j] + dtu[j] * bs;
                        acc[j] += h[s][j] * cs;
                    }
                }
                #pragma omp simd
                for (int j = 0; j < CB; j++)
                    y[i + j] = (acc[j] + D[c0 + j] * u[i + j]) * zt[j] * sigm(zt[j]);
            }
        }
}

/* Gradients of scan_fwd. du, ddr, dz (b, l, d_in); dB, dC (b, l, n) zeroed by the caller;
   dAt_p (b, n, d_in), dD_p, dbias_p (b, d_in): per-batch partial sums the caller reduces.
   Parallel over the batch, so each thread owns dB[ib], dC[ib] (they sum over channels).
   Per block: recompute h_0..h_l into a buffer (l+1)*n*CB floats, then run the adjoint
   recurrence backwards: dh_{t-1} = exp(delta_t A) * dh_t. */
void scan_bwd(const float *u, const float *dr, const float *dt_bias, const float *At,
              const float *Bm, const float *Cm, const float *D, const float *z, long sz,
              const float *gy, float *du, float *ddr, float *dz, float *dAt_p, float *dB,
              float *dC, float *dD_p, float *dbias_p, int b, int d_in, int l, int n) {
    #pragma omp parallel
    {
        float *hs = (float *)aligned_alloc(64, sizeof(float) * (size_t)(l + 1) * n * CB);
        float *dts = (float *)aligned_alloc(64, sizeof(float) * (size_t)l * CB);
        #pragma omp for schedule(static)
        for (int ib = 0; ib < b; ib++) {
            for (int c0 = 0; c0 < d_in; c0 += CB) {
                for (int s = 0; s < n * CB; s++) hs[s] = 0.f;
                for (int t = 0; t < l; t++) {
                    const long i = ((long)ib * l + t) * d_in + c0;
                    const float *Bt = Bm + ((long)ib * l + t) * n;
                    float *hp = hs + (long)t * n * CB, *hn = hp + n * CB, *dt = dts + (long)t * CB;
                    float dtu[CB];
                    #pragma omp simd
                    for (int j = 0; j < CB; j++) {
                        dt[j] = softplus(dr[i + j] + dt_bias[c0 + j]);
                        dtu[j] = dt[j] * u[i + j];
                    }
                    for (int s = 0; s < n; s++) {
                        const float bs = Bt[s], *As = At + (long)s * d_in + c0;
                        #pragma omp simd
                        for (int j = 0; j < CB; j++)
                            hn[s * CB + j] = expf(dt[j] * As[j]) * hp[s * CB + j] + dtu[j] * bs;
                    }
                }
                float dh[64][CB], dA[64][CB], dDa[CB], dba[CB];
                for (int s = 0; s < n; s++) for (int j = 0; j < CB; j++) { dh[s][j] = 0.f; dA[s][j] = 0.f; }
                for (int j = 0; j < CB; j++) { dDa[j] = 0.f; dba[j] = 0.f; }
                for (int t = l - 1; t >= 0; t--) {
                    const long i = ((long)ib * l + t) * d_in + c0;
                    const float *Bt = Bm + ((long)ib * l + t) * n, *Ct = Cm + ((long)ib * l + t) * n;
                    float *dBt = dB + ((long)ib * l + t) * n, *dCt = dC + ((long)ib * l + t) * n;
                    const float *zt = z + ((long)ib * l + t) * sz + c0;
                    const float *hp = hs + (long)t * n * CB, *hn = hp + n * CB, *dt = dts + (long)t * CB;
                    float ys[CB], g[CB], ddt[CB], dut[CB], ut[CB];
                    #pragma omp simd
                    for (int j = 0; j < CB; j++) { ys[j] = 0.f; ut[j] = u[i + j]; }
                    for (int s = 0; s < n; s++) {
                        const float cs = Ct[s];
                        #pragma omp simd
                        for (int j = 0; j < CB; j++) ys[j] += hn[s * CB + j] * cs;
                    }
                    #pragma omp simd
                    for (int j = 0; j < CB; j++) {
                        const float sg = sigm(zt[j]);
                        dz[i + j] = gy[i + j] * (ys[j] + D[c0 + j] * ut[j]) * sg * (1.f + zt[j] * (1.f - sg));
                        g[j] = gy[i + j] * zt[j] * sg;                  /* d y_scan */
                        dDa[j] += g[j] * ut[j];
                        dut[j] = g[j] * D[c0 + j];
                        ddt[j] = 0.f;
                    }
                    for (int s = 0; s < n; s++) {
                        const float bs = Bt[s], cs = Ct[s], *As = At + (long)s * d_in + c0;
                        float dc = 0.f, dbb = 0.f;
                        #pragma omp simd reduction(+:dc, dbb)
                        for (int j = 0; j < CB; j++) {
                            const float a = expf(dt[j] * As[j]);
                            dh[s][j] += g[j] * cs;                      /* y_t = <h_t, C_t> */
                            dc += g[j] * hn[s * CB + j];
                            const float da = dh[s][j] * hp[s * CB + j] * a;  /* d(dt*A) of a*h_{t-1} */
                            ddt[j] += da * As[j] + dh[s][j] * ut[j] * bs;
                            dA[s][j] += da * dt[j];
                            dbb += dh[s][j] * dt[j] * ut[j];
                            dut[j] += dh[s][j] * dt[j] * bs;
                            dh[s][j] *= a;                              /* dh_{t-1} */
                        }
                        dCt[s] += dc;
                        dBt[s] += dbb;
                    }
                    #pragma omp simd
                    for (int j = 0; j < CB; j++) {
                        du[i + j] = dut[j];
                        const float dpre = ddt[j] * (1.f - expf(-dt[j]));  /* softplus' = 1 - exp(-softplus) */
                        ddr[i + j] = dpre;
                        dba[j] += dpre;
                    }
                }
                for (int s = 0; s < n; s++)
                    for (int j = 0; j < CB; j++) dAt_p[((long)ib * n + s) * d_in + c0 + j] = dA[s][j];
                for (int j = 0; j < CB; j++) {
                    dD_p[(long)ib * d_in + c0 + j] = dDa[j];
                    dbias_p[(long)ib * d_in + c0 + j] = dba[j];
                }
            }
        }
        free(hs);
        free(dts);
    }
}
"""

_MAX_STATE = 64
_MAX_CONV = 16
_CHANNEL_BLOCK = 16  # CB in the C code
_lib = None


def _kernel():
    """Compile the kernels once per source version (cached by hash) and load them with ctypes."""
    global _lib
    if _lib is not None:
        return _lib
    cache_dir = os.environ.get(
        "FAST_MAMBA_CACHE",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".cache", "fast_mamba"),
    )
    os.makedirs(cache_dir, exist_ok=True)
    flags = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
    tag = hashlib.sha256((_KERNELS_C + " ".join(flags)).encode()).hexdigest()[:16]
    so_path = os.path.join(cache_dir, f"kernels_{tag}.so")
    if not os.path.exists(so_path):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "kernels.c")
            with open(src, "w") as f:
                f.write(_KERNELS_C)
            tmp_so = os.path.join(tmp, "kernels.so")
            subprocess.run(["gcc", *flags, src, "-o", tmp_so, "-lm"], check=True)
            os.replace(tmp_so, so_path)
    lib = ctypes.CDLL(so_path)
    P, I, L = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    lib.conv_fwd.argtypes = [P, L, P, P, P] + [I] * 4
    lib.conv_bwd.argtypes = [P, L, P, P, P, P, P, P] + [I] * 4
    lib.scan_fwd.argtypes = [P] * 8 + [L, P] + [I] * 4
    lib.scan_bwd.argtypes = [P] * 8 + [L] + [P] * 9 + [I] * 4
    _lib = lib
    return lib


def _p(t):
    return ctypes.c_void_p(t.data_ptr())


def _rows(x):
    """(b, l, w) float32 view whose last dim is contiguous (e.g. a chunk of in_proj's output):
    returns it with its row stride, copying only if needed."""
    x = x.float()
    if x.stride(2) != 1 or x.stride(0) != x.shape[1] * x.stride(1):
        x = x.contiguous()
    return x, x.stride(1)


class CausalConvSilu(torch.autograd.Function):
    """u = silu(causal depthwise conv1d(x)), time-major. x: (b, l, d_in) (row stride may be larger);
    weight: (d_in, 1, k) as nn.Conv1d stores it; bias: (d_in,). Returns u: (b, l, d_in)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        x, sx = _rows(x)
        b, l, d_in = x.shape
        wt = weight.reshape(d_in, -1).t().contiguous().float()   # (k, d_in)
        bias = bias.contiguous().float()
        assert wt.shape[0] <= _MAX_CONV and d_in % _CHANNEL_BLOCK == 0
        u = torch.empty(b, l, d_in)
        _kernel().conv_fwd(_p(x), sx, _p(wt), _p(bias), _p(u), b, d_in, l, wt.shape[0])
        ctx.save_for_backward(x, wt, bias)
        ctx.sx, ctx.wshape = sx, weight.shape
        return u

    @staticmethod
    def backward(ctx, du):
        x, wt, bias = ctx.saved_tensors
        du = du.contiguous().float()
        b, l, d_in = du.shape
        dx, dwt, dbias = torch.zeros(b, l, d_in), torch.empty_like(wt), torch.empty_like(bias)
        _kernel().conv_bwd(_p(x), ctx.sx, _p(wt), _p(bias), _p(du), _p(dx), _p(dwt), _p(dbias),
                           b, d_in, l, wt.shape[0])
        return dx, dwt.t().reshape(ctx.wshape), dbias


class SelectiveScan(torch.autograd.Function):
    """y = (scan(u, softplus(dr + dt_bias), A, B, C) + D*u) * silu(z), time-major.

    u, dr: (b, l, d_in); z: (b, l, d_in) (row stride may be larger); A: (d_in, n);
    B, C: (b, l, n); dt_bias, D: (d_in,). Returns y: (b, l, d_in).
    """

    @staticmethod
    def forward(ctx, u, dr, dt_bias, A, B, C, D, z):
        At = A.t()                                              # (n, d_in)
        u, dr, dt_bias, At, B, C, D = (t.contiguous().float() for t in (u, dr, dt_bias, At, B, C, D))
        z, sz = _rows(z)
        b, l, d_in = u.shape
        n = At.shape[0]
        assert n <= _MAX_STATE, f"d_state {n} > {_MAX_STATE}"
        assert d_in % _CHANNEL_BLOCK == 0, f"intermediate_size {d_in} not a multiple of {_CHANNEL_BLOCK}"
        y = torch.empty_like(u)
        _kernel().scan_fwd(_p(u), _p(dr), _p(dt_bias), _p(At), _p(B), _p(C), _p(D), _p(z), sz,
                           _p(y), b, d_in, l, n)
        ctx.save_for_backward(u, dr, dt_bias, At, B, C, D, z)
        ctx.sz = sz
        return y

    @staticmethod
    def backward(ctx, gy):
        u, dr, dt_bias, At, B, C, D, z = ctx.saved_tensors
        gy = gy.contiguous().float()
        b, l, d_in = u.shape
        n = At.shape[0]
        du, ddr, dz = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
        dAt_p, dD_p, dbias_p = torch.empty(b, n, d_in), torch.empty(b, d_in), torch.empty(b, d_in)
        dB, dC = torch.zeros_like(B), torch.zeros_like(C)
        _kernel().scan_bwd(_p(u), _p(dr), _p(dt_bias), _p(At), _p(B), _p(C), _p(D), _p(z), ctx.sz,
                           _p(gy), _p(du), _p(ddr), _p(dz), _p(dAt_p), _p(dB), _p(dC), _p(dD_p),
                           _p(dbias_p), b, d_in, l, n)
        return du, ddr, dbias_p.sum(0), dAt_p.sum(0).t(), dB, dC, dD_p.sum(0), dz


# ---------------------------------------------------------------------------------------------
# The model (parameter names = HF MambaForCausalLM's state_dict keys)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MambaConfig:
    vocab_size: int
    hidden_size: int = 256          # d
    num_hidden_layers: int = 6
    state_size: int = 16            # n
    expand: int = 2
    conv_kernel: int = 4            # k
    time_step_rank: int = 0         # r; 0 -> ceil(d / 16) as in HF
    layer_norm_epsilon: float = 1e-5

    @property
    def intermediate_size(self):    # d_in
        return self.expand * self.hidden_size

    @property
    def dt_rank(self):
        return self.time_step_rank or math.ceil(self.hidden_size / 16)

    def hf_dict(self):
        """config.json for transformers.MambaConfig (model_type "mamba")."""
        return {
            "architectures": ["MambaForCausalLM"],
            "model_type": "mamba",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "state_size": self.state_size,
            "expand": self.expand,
            "intermediate_size": self.intermediate_size,
            "conv_kernel": self.conv_kernel,
            "time_step_rank": self.dt_rank,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "use_bias": False,
            "use_conv_bias": True,
            "hidden_act": "silu",
            "residual_in_fp32": True,
            "tie_word_embeddings": True,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "pad_token_id": 0,
        }


class Mixer(nn.Module):
    """HF MambaMixer.slow_forward with the time loop replaced by the C scan."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        d, d_in, n, r, k = (cfg.hidden_size, cfg.intermediate_size, cfg.state_size,
                            cfg.dt_rank, cfg.conv_kernel)
        self.n, self.r = n, r
        self.in_proj = nn.Linear(d, 2 * d_in, bias=False)
        self.conv1d = nn.Conv1d(d_in, d_in, k, groups=d_in, padding=k - 1, bias=True)
        self.x_proj = nn.Linear(d_in, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d_in, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_in, 1))
        self.D = nn.Parameter(torch.ones(d_in))
        self.out_proj = nn.Linear(d_in, d, bias=False)

    def forward(self, x):                                       # x: (b, l, d)
        xs, z = self.in_proj(x).chunk(2, dim=-1)                # (b, l, d_in) each, strided views
        u = CausalConvSilu.apply(xs, self.conv1d.weight, self.conv1d.bias)   # (b, l, d_in)
        dt, B, C = torch.split(self.x_proj(u), [self.r, self.n, self.n], dim=-1)
        dr = F.linear(dt, self.dt_proj.weight)                  # (b, l, d_in); bias added in the scan
        A = -torch.exp(self.A_log)                              # (d_in, n)
        y = SelectiveScan.apply(u, dr, self.dt_proj.bias, A, B, C, self.D, z)  # (b, l, d_in)
        return self.out_proj(y)                                 # (b, l, d)


class FastMambaLM(TiedLM):
    """state_dict() keys are HF's MambaForCausalLM's, minus lm_head.weight (tied to backbone.embeddings.weight)."""

    def __init__(self, cfg: MambaConfig):
        super().__init__(cfg, Mixer)
        self._init_like_hf()

    @torch.no_grad()
    def _init_like_hf(self):
        """MambaPreTrainedModel._init_weights: dt bias = softplus^-1(dt), dt in [1e-3, 0.1]
        log-uniform; dt_proj.weight uniform(+-r^-0.5); embeddings N(0, 0.02); Linear N(0, 0.02)
        (HF's default initializer_range); out_proj rescaled by 1/sqrt(n_layer)."""
        cfg = self.cfg
        nn.init.normal_(self.backbone.embeddings.weight, std=0.02)
        for block in self.backbone.layers:
            m = block.mixer
            for lin in (m.in_proj, m.x_proj, m.out_proj):
                nn.init.normal_(lin.weight, std=0.02)
            m.out_proj.weight /= math.sqrt(cfg.num_hidden_layers)
            std = cfg.dt_rank ** -0.5
            nn.init.uniform_(m.dt_proj.weight, -std, std)
            m.dt_proj.bias.copy_(dt_bias_init(cfg.intermediate_size))
