"""One Mamba-2 shard's mixer: mamba2.py's math on h_s heads, cut open where the shards meet
(sharded.py explains the plan and the protocol; mamba2.py the math and its glossary).

Per head everything is local: the z, x and dt rows of in_proj, the conv of x, dt_bias, A, D and
the state (h_s, p, n). B and C belong to groups of heads: a shard computes the B and C of every
group it holds a head of (their in_proj rows and conv channels are loaded on each such shard), so
they need no exchange. What does cross shards:
  - out_proj's partial sums (d,), as in Mamba-1;
  - the gated RMSNorm's sums of squares per group (g,), when the plan cuts a group: its
    normalisation runs over all d_in/g channels of the group, on several shards.
"""

import numpy as np

from .mamba2 import _ssd
from .model import _linear, _project, _silu, _softplus
from .sharded import _exchange


class Mamba2Mixers:
    """A Mamba-2 shard's mixer: the state rows it holds, and one layer for one token or a sequence."""

    def __init__(self, config, shard):
        c = config
        self.config = config
        self.shard = shard
        self.n_heads = len(shard.heads)  # h_s
        self.d_s = len(shard.channels)
        self.gn_s = len(shard.groups) * c.d_state  # B's (and C's) rows on this shard
        per_group = c.n_heads // c.n_groups
        # the local group of each local head: B and C are gathered per head when the shard's heads
        # are not whole groups (then mamba2._ssd sees h_s groups of one head each)
        self.group_of_head = np.array([h // per_group for h in shard.heads]) - shard.groups.start  # (h_s,)
        self.whole_groups = shard.heads.start % per_group == 0 and shard.heads.stop % per_group == 0
        # the gated norm: where each local group's channels start among the shard's, and how many
        self.group_width = c.d_inner // c.n_groups
        bounds = [max(g * self.group_width, shard.channels.start) - shard.channels.start for g in shard.groups]
        self.norm_starts = np.array(bounds)
        self.norm_counts = np.diff(bounds + [self.d_s])
        e_s = self.d_s + 2 * self.gn_s
        self.state_shapes = {"conv": (e_s, c.d_conv), "ssm": (self.n_heads, c.head_dim, c.d_state)}
        self.conv_rows = conv_rows(c, shard)
        self.state_rows = {"conv": (self.conv_rows, c.conv_dim), "ssm": (np.arange(shard.heads.start, shard.heads.stop), c.n_heads)}

    def step(self, u, w, conv_state, ssm):
        """Generator: mamba2._mixer_step on h_s heads; yields the gated norm's (when a group is cut)
        and out_proj's partial sums, returns this layer's update of u (d,)."""
        c, d_s, e_s = self.config, self.d_s, self.d_s + 2 * self.gn_s
        zxbcdt = _linear(u, w.in_proj, w.in_proj_bias)  # (d_s + e_s + h_s,)
        z, xbc, dt = zxbcdt[:d_s], zxbcdt[d_s : d_s + e_s], zxbcdt[d_s + e_s :]

        conv_state[:, :-1] = conv_state[:, 1:]
        conv_state[:, -1] = xbc
        xbc = np.einsum("ek,ek->e", conv_state, w.conv)  # (e_s,)
        if w.conv_bias is not None:
            xbc += w.conv_bias
        x, B, C = self._split_xbc(_silu(xbc))  # (h_s, p), (g_s, n), (g_s, n)

        dt = np.clip(_softplus(dt + w.dt_bias), *c.dt_limit)  # (h_s,)
        ssm *= np.exp(dt * w.A)[:, None, None]  # (h_s, p, n)
        B, C = B[self.group_of_head], C[self.group_of_head]  # (h_s, n): each head's group's
        ssm += (dt[:, None] * x)[:, :, None] * B[:, None, :]  # h += dt * x B^T
        y = np.einsum("hpn,hn->hp", ssm, C).reshape(d_s)  # (d_s,) = h C
        y += (w.D[:, None] * x).reshape(d_s)
        y = yield from self._gated_rmsnorm(y, z, w.gated_norm)  # (d_s,)
        mixed = yield from _exchange(_project(y, w.out_proj))  # (d,): summed over every shard's heads
        return mixed if w.out_proj_bias is None else mixed + w.out_proj_bias

    def sequence(self, u, w, conv_state, ssm):
        """Generator: mamba2._mixer_sequence on h_s heads; yields (l, g) and (l, d) partial sums."""
        c, d_s, e_s = self.config, self.d_s, self.d_s + 2 * self.gn_s
        l, k = u.shape[0], c.d_conv
        zxbcdt = _linear(u, w.in_proj, w.in_proj_bias)  # (l, d_s + e_s + h_s)
        z, xbc, dt = zxbcdt[:, :d_s], zxbcdt[:, d_s : d_s + e_s], zxbcdt[:, d_s + e_s :]

        window = np.concatenate([conv_state[:, 1:].T, xbc])  # (k-1+l, e_s)
        conv_state[:] = window[-k:].T
        xbc = sum(window[j : j + l] * w.conv[:, j] for j in range(k))  # (l, e_s)
        if w.conv_bias is not None:
            xbc += w.conv_bias
        x, B, C = self._split_xbc(_silu(xbc))  # (l, h_s, p), (l, g_s, n), (l, g_s, n)
        if not self.whole_groups:  # a group cut by the plan: one group per head for _ssd
            B, C = B[:, self.group_of_head], C[:, self.group_of_head]  # (l, h_s, n)

        dt = np.clip(_softplus(dt + w.dt_bias), *c.dt_limit)  # (l, h_s)
        y = _ssd(x, dt, w.A, B, C, ssm)  # (l, h_s, p)
        y += w.D[:, None] * x
        y = yield from self._gated_rmsnorm(y.reshape(l, d_s), z, w.gated_norm)  # (l, d_s)
        mixed = yield from _exchange(_project(y, w.out_proj))  # (l, d)
        return mixed if w.out_proj_bias is None else mixed + w.out_proj_bias

    def _split_xbc(self, xbc):
        """(..., e_s) -> x (..., h_s, p), B (..., g_s, n), C (..., g_s, n): views."""
        c, d_s, gn = self.config, self.d_s, self.gn_s
        lead = xbc.shape[:-1]
        x = xbc[..., :d_s].reshape(*lead, self.n_heads, c.head_dim)
        B = xbc[..., d_s : d_s + gn].reshape(*lead, -1, c.d_state)
        C = xbc[..., d_s + gn :].reshape(*lead, -1, c.d_state)
        return x, B, C

    def _gated_rmsnorm(self, y, z, scale):
        """Generator: mamba2._gated_rmsnorm on the shard's channels. Each group's sum of squares
        is this shard's part of it, summed over the shards when the plan cuts a group."""
        c, groups = self.config, self.shard.groups
        y = y * _silu(z)  # (..., d_s)
        squares = np.add.reduceat(y * y, self.norm_starts, axis=-1)  # (..., g_s): this shard's part
        if self.shard.cut_groups:
            every = np.zeros((*y.shape[:-1], c.n_groups), np.float32)  # (..., g)
            every[..., groups.start : groups.stop] = squares
            squares = (yield from _exchange(every))[..., groups.start : groups.stop]
        rms = np.sqrt(squares / np.float32(self.group_width) + np.float32(c.gated_norm_eps))  # (..., g_s)
        return y / np.repeat(rms, self.norm_counts, axis=-1) * scale


def conv_rows(config, shard):
    """The rows of the whole conv (and of in_proj's xBC part) a shard holds: its x channels, then
    its groups' B rows, then their C rows, in the whole model's order (x d_in, B g*n, C g*n)."""
    c, n = config, config.d_state
    d_in, gn = c.d_inner, c.n_groups * n
    groups = slice(shard.groups.start * n, shard.groups.stop * n)
    every = np.arange(c.conv_dim)
    return np.concatenate([every[shard.channels.start : shard.channels.stop],
                           every[d_in : d_in + gn][groups], every[d_in + gn :][groups]])
