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
The scan keeps the state h (n floats per channel) in registers:
    forward:  h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t;   y_t = <h_t, C_t>
    backward: per channel, recompute h_0..h_l into a small buffer (l * n floats, in cache), then
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

# ---------------------------------------------------------------------------------------------
# The selective-scan kernel
# ---------------------------------------------------------------------------------------------

_KERNELS_C = r"""
#include <math.h>
#include <stdlib.h>

static inline float sigm(float x) { return 1.f / (1.f + expf(-x)); }
static inline float softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }

/* Causal depthwise conv + silu, time-major: x (b, l, ·) with row stride sx (a view of in_proj's
   output), w (d_in, k), bias (d_in); u (b, l, d_in) = silu(conv(x)). Channels are independent,
   so run one channel's time series at a time (its k taps stay in registers). */
void conv_fwd(const float *x, long sx, const float *w, const float *bias, float *u,
              int b, int d_in, int l, int k) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int ib = 0; ib < b; ib++)
        for (int c = 0; c < d_in; c++) {
            const float *xc = x + (long)ib * l * sx + c;
            float *uc = u + (long)ib * l * d_in + c;
            const float *wc = w + (long)c * k;
            for (int t = 0; t < l; t++) {
                float acc = bias[c];
                for (int j = 0; j < k; j++) {
                    int ts = t - (k - 1) + j;
                    if (ts >= 0) acc += wc[j] * xc[(long)ts * sx];
                }
                uc[(long)t * d_in] = acc * sigm(acc);
            }
        }
}

/* du (b, l, d_in) -> dx (b, l, d_in), dw (d_in, k), dbias (d_in). Parallel over channels
   (each owns dw[c], dbias[c]). */
void conv_bwd(const float *x, long sx, const float *w, const float *bias, const float *du,
              float *dx, float *dw, float *dbias, int b, int d_in, int l, int k) {
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < d_in; c++) {
        const float *wc = w + (long)c * k;
        float dwc[16] = {0}, db = 0.f;
        for (int ib = 0; ib < b; ib++) {
            const float *xc = x + (long)ib * l * sx + c;
            const float *duc = du + (long)ib * l * d_in + c;
            float *dxc = dx + (long)ib * l * d_in + c;
            for (int t = 0; t < l; t++) dxc[(long)t * d_in] = 0.f;
            for (int t = 0; t < l; t++) {
                float acc = bias[c];
                for (int j = 0; j < k; j++) {
                    int ts = t - (k - 1) + j;
                    if (ts >= 0) acc += wc[j] * xc[(long)ts * sx];
                }
                float s = sigm(acc);
                float g = duc[(long)t * d_in] * s * (1.f + acc * (1.f - s));  /* silu' */
                db += g;
                for (int j = 0; j < k; j++) {
                    int ts = t - (k - 1) + j;
                    if (ts >= 0) {
                        dwc[j] += g * xc[(long)ts * sx];
                        dxc[(long)ts * d_in] += g * wc[j];
                    }
                }
            }
        }
        for (int j = 0; j < k; j++) dw[(long)c * k + j] = dwc[j];
        dbias[c] = db;
    }
}

/* The selective scan with HF's surrounding elementwise ops fused in (as mamba_ssm's
   selective_scan_fn with D, z, delta_bias, delta_softplus=True):
     delta = softplus(dr + dt_bias);  h_t = exp(delta*A) h_{t-1} + delta*u*B_t;
     y_t = (<h_t, C_t> + D*u) * silu(z_t)
   Time-major: u, dr, y (b, l, d_in) contiguous; z (b, l, ·) with row stride sz; B, C (b, l, n).
   Strided per-channel reads are cheap: neighbouring channels reuse the same cache lines. */
void scan_fwd(const float *u, const float *dr, const float *dt_bias, const float *A,
              const float *Bm, const float *Cm, const float *D, const float *z, long sz,
              float *y, int b, int d_in, int l, int n) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int ib = 0; ib < b; ib++)
        for (int c = 0; c < d_in; c++) {
            const long o = (long)ib * l * d_in + c;
            const float *Bb = Bm + (long)ib * l * n, *Cb = Cm + (long)ib * l * n;
            const float *zc = z + (long)ib * l * sz + c;
            const float *Ac = A + (long)c * n;
            float h[64];
            for (int s = 0; s < n; s++) h[s] = 0.f;
            for (int t = 0; t < l; t++) {
                const long i = o + (long)t * d_in;
                const float ut = u[i], dt = softplus(dr[i] + dt_bias[c]), dtu = dt * ut;
                const float *Bt = Bb + (long)t * n, *Ct = Cb + (long)t * n;
                float acc = 0.f;
                #pragma omp simd reduction(+:acc)
                for (int s = 0; s < n; s++) {
                    h[s] = expf(dt * Ac[s]) * h[s] + dtu * Bt[s];
                    acc += h[s] * Ct[s];
                }
                const float zt = zc[(long)t * sz];
                y[i] = (acc + D[c] * ut) * zt * sigm(zt);
            }
        }
}

/* Gradients of scan_fwd. du, ddr (b, l, d_in); dz (b, l, d_in) contiguous; dB, dC (b, l, n)
   zeroed by the caller; dA_p (b, d_in, n), dD_p, dbias_p (b, d_in): per-batch partial sums the
   caller reduces. Parallel over the batch so each thread owns dB[ib], dC[ib] (sums over
   channels). Per channel: recompute h_0..h_l into a small buffer (l*n floats), then run the
   adjoint recurrence backwards: dh_{t-1} = exp(delta_t A) * dh_t + ... */
void scan_bwd(const float *u, const float *dr, const float *dt_bias, const float *A,
              const float *Bm, const float *Cm, const float *D, const float *z, long sz,
              const float *gy, float *du, float *ddr, float *dz, float *dA_p, float *dB,
              float *dC, float *dD_p, float *dbias_p, int b, int d_in, int l, int n) {
    #pragma omp parallel
    {
        float *hs = (float *)malloc(sizeof(float) * (size_t)(l + 1) * n);  /* h_0..h_l */
        float *as = (float *)malloc(sizeof(float) * (size_t)l * n);        /* exp(delta_t A) */
        float *dts = (float *)malloc(sizeof(float) * (size_t)l);
        #pragma omp for schedule(static)
        for (int ib = 0; ib < b; ib++) {
            const float *Bb = Bm + (long)ib * l * n, *Cb = Cm + (long)ib * l * n;
            float *dBb = dB + (long)ib * l * n, *dCb = dC + (long)ib * l * n;
            for (int c = 0; c < d_in; c++) {
                const long o = (long)ib * l * d_in + c;
                const float *zc = z + (long)ib * l * sz + c;
                const float *Ac = A + (long)c * n;
                for (int s = 0; s < n; s++) hs[s] = 0.f;
                for (int t = 0; t < l; t++) {
                    const long i = o + (long)t * d_in;
                    const float dt = softplus(dr[i] + dt_bias[c]), dtu = dt * u[i];
                    const float *Bt = Bb + (long)t * n;
                    float *hp = hs + (long)t * n, *hn = hp + n, *at = as + (long)t * n;
                    dts[t] = dt;
                    #pragma omp simd
                    for (int s = 0; s < n; s++) {
                        at[s] = expf(dt * Ac[s]);
                        hn[s] = at[s] * hp[s] + dtu * Bt[s];
                    }
                }
                float dh[64], dAacc[64], dDacc = 0.f, dbacc = 0.f;
                for (int s = 0; s < n; s++) { dh[s] = 0.f; dAacc[s] = 0.f; }
                for (int t = l - 1; t >= 0; t--) {
                    const long i = o + (long)t * d_in;
                    const float ut = u[i], dt = dts[t], zt = zc[(long)t * sz];
                    const float *Bt = Bb + (long)t * n, *Ct = Cb + (long)t * n;
                    float *dBt = dBb + (long)t * n, *dCt = dCb + (long)t * n;
                    const float *hp = hs + (long)t * n, *hn = hp + n, *at = as + (long)t * n;
                    float ys = 0.f;
                    #pragma omp simd reduction(+:ys)
                    for (int s = 0; s < n; s++) ys += hn[s] * Ct[s];
                    const float sg = sigm(zt), gate = zt * sg;
                    dz[i] = gy[i] * (ys + D[c] * ut) * sg * (1.f + zt * (1.f - sg));
                    const float g = gy[i] * gate;             /* d y_scan */
                    dDacc += g * ut;
                    float ddt = 0.f, dut = g * D[c];
                    #pragma omp simd reduction(+:ddt, dut)
                    for (int s = 0; s < n; s++) {
                        dh[s] += g * Ct[s];
                        dCt[s] += g * hn[s];
                        const float da = dh[s] * hp[s] * at[s];  /* d(dt*A) of a_t*h_{t-1} */
                        ddt += da * Ac[s] + dh[s] * ut * Bt[s];
                        dAacc[s] += da * dt;
                        dBt[s] += dh[s] * dt * ut;
                        dut += dh[s] * dt * Bt[s];
                        dh[s] *= at[s];
                    }
                    du[i] = dut;
                    const float dpre = ddt * (1.f - expf(-dt));  /* softplus'(x) = 1 - exp(-softplus(x)) */
                    ddr[i] = dpre;
                    dbacc += dpre;
                }
                float *dAc = dA_p + ((long)ib * d_in + c) * n;
                for (int s = 0; s < n; s++) dAc[s] = dAacc[s];
                dD_p[(long)ib * d_in + c] = dDacc;
                dbias_p[(long)ib * d_in + c] = dbacc;
            }
        }
        free(hs); free(as); free(dts);
    }
}
"""

_MAX_STATE = 64
_MAX_CONV = 16
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
        w = weight.reshape(d_in, -1).contiguous().float()
        bias = bias.contiguous().float()
        assert w.shape[1] <= _MAX_CONV
        u = torch.empty(b, l, d_in)
        _kernel().conv_fwd(_p(x), sx, _p(w), _p(bias), _p(u), b, d_in, l, w.shape[1])
        ctx.save_for_backward(x, w, bias)
        ctx.sx, ctx.wshape = sx, weight.shape
        return u

    @staticmethod
    def backward(ctx, du):
        x, w, bias = ctx.saved_tensors
        du = du.contiguous().float()
        b, l, d_in = du.shape
        dx, dw, dbias = torch.empty(b, l, d_in), torch.empty_like(w), torch.empty_like(bias)
        _kernel().conv_bwd(_p(x), ctx.sx, _p(w), _p(bias), _p(du), _p(dx), _p(dw), _p(dbias),
                           b, d_in, l, w.shape[1])
        return dx, dw.reshape(ctx.wshape), dbias


class SelectiveScan(torch.autograd.Function):
    """y = (scan(u, softplus(dr + dt_bias), A, B, C) + D*u) * silu(z), time-major.

    u, dr: (b, l, d_in); z: (b, l, d_in) (row stride may be larger); A: (d_in, n);
    B, C: (b, l, n); dt_bias, D: (d_in,). Returns y: (b, l, d_in).
    """

    @staticmethod
    def forward(ctx, u, dr, dt_bias, A, B, C, D, z):
        u, dr, dt_bias, A, B, C, D = (t.contiguous().float() for t in (u, dr, dt_bias, A, B, C, D))
        z, sz = _rows(z)
        b, l, d_in = u.shape
        n = A.shape[1]
        assert n <= _MAX_STATE, f"d_state {n} > {_MAX_STATE}"
        y = torch.empty_like(u)
        _kernel().scan_fwd(_p(u), _p(dr), _p(dt_bias), _p(A), _p(B), _p(C), _p(D), _p(z), sz,
                           _p(y), b, d_in, l, n)
        ctx.save_for_backward(u, dr, dt_bias, A, B, C, D, z)
        ctx.sz = sz
        return y

    @staticmethod
    def backward(ctx, gy):
        u, dr, dt_bias, A, B, C, D, z = ctx.saved_tensors
        gy = gy.contiguous().float()
        b, l, d_in = u.shape
        n = A.shape[1]
        du, ddr, dz = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
        dA_p, dD_p, dbias_p = torch.empty(b, d_in, n), torch.empty(b, d_in), torch.empty(b, d_in)
        dB, dC = torch.zeros_like(B), torch.zeros_like(C)
        _kernel().scan_bwd(_p(u), _p(dr), _p(dt_bias), _p(A), _p(B), _p(C), _p(D), _p(z), ctx.sz,
                           _p(gy), _p(du), _p(ddr), _p(dz), _p(dA_p), _p(dB), _p(dC), _p(dD_p),
                           _p(dbias_p), b, d_in, l, n)
        return du, ddr, dbias_p.sum(0), dA_p.sum(0), dB, dC, dD_p.sum(0), dz


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


class RMSNorm(nn.Module):
    """HF MambaRMSNorm."""

    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


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


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.mixer = Mixer(cfg)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm_f = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)


class FastMambaLM(nn.Module):
    """state_dict() keys are HF's, minus lm_head.weight (tied to backbone.embeddings.weight)."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
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
            dt = torch.exp(torch.rand(cfg.intermediate_size) * (math.log(0.1) - math.log(1e-3))
                           + math.log(1e-3)).clamp(min=1e-4)
            m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, ids):                                     # ids: (b, l) -> logits (b, l, v)
        x = self.backbone.embeddings(ids)
        for block in self.backbone.layers:
            x = block(x)
        x = self.backbone.norm_f(x)
        return F.linear(x, self.backbone.embeddings.weight)

    def hf_state_dict(self):
        """Tensors for model.safetensors, named exactly as MambaForCausalLM expects."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}
