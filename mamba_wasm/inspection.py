"""The probe: what the selective state space did, per layer and token.

    probe = Probe(model.config.n_layer)                  # per_channel=True also keeps Δ per channel
    model.forward(ids, probe=probe)                      # or step(token, state, probe=probe), prefill
    probe.delta_mean, probe.kept, probe.state_norm       # (l, n_layer) each

For each layer and token:
    delta_mean  mean over channels of the time step Δ: large Δ writes the token into the state,
                small Δ lets it pass (Gu & Dao 2023, section 3.5.2, "interpretation of Δ")
    kept        mean over the state's entries of Ā = exp(Δ·A): the share of the state carried over
                from the previous token (1: all kept, 0: forgotten)
    state_norm  the Frobenius norm of the SSM state h after the token
    delta       (l, n_layer, channels) Δ itself, with per_channel=True
Channels are d_in for Mamba-1 (model.py) and the heads for Mamba-2 (mamba2.py: one Δ and one
scalar A per head; there kept is the mean over heads). Calls append: step after step builds the
same arrays as one forward. The model calls `record` only when a probe is given, so without one
it costs two `is None` tests per layer.
"""

import functools

import numpy as np


class Probe:
    """Collects, per layer, one row per token run through the model while it is passed in."""

    def __init__(self, n_layer, per_channel=False):
        self.per_channel = per_channel
        self._delta = [[] for _ in range(n_layer)]  # per layer, in token order: Δ (channels,) or (t, channels), or their means
        self._kept = [[] for _ in range(n_layer)]  # per layer: floats (one token) or (t,) blocks
        self._state_norm = [[] for _ in range(n_layer)]  # per layer: floats or (t,) blocks

    def recorder(self, layer):
        """What layer `layer`'s mixer calls: record(delta, kept, state_norm) for that layer."""
        return functools.partial(self.record, layer)

    def record(self, layer, delta, kept, state_norm):
        """Layer `layer` ran one token (delta (channels,), kept and state_norm floats) or t tokens
        (delta (t, channels), kept (t,), state_norm (t,)). Step after step, the values of each token
        are kept as they come; the arrays are assembled only when read."""
        self._delta[layer].append(delta.copy() if self.per_channel else delta.mean(axis=-1))
        self._kept[layer].append(kept)
        self._state_norm[layer].append(state_norm)

    @property
    def n_tokens(self):
        return int(np.hstack(self._kept[0]).shape[0]) if self._kept[0] else 0

    @property
    def delta_mean(self):
        """(l, n_layer) mean Δ over channels."""
        return self._stack([np.hstack(blocks) if not self.per_channel
                            else np.vstack(blocks).mean(axis=1) for blocks in self._delta])

    @property
    def delta(self):
        """(l, n_layer, channels) Δ per channel (per_channel=True only)."""
        if not self.per_channel:
            raise AttributeError("Δ per channel was not kept: make the Probe with per_channel=True")
        return np.stack([np.vstack(blocks) for blocks in self._delta], axis=1)

    @property
    def kept(self):
        """(l, n_layer) mean exp(Δ·A)."""
        return self._stack([np.hstack(blocks) for blocks in self._kept])

    @property
    def state_norm(self):
        """(l, n_layer) norm of the SSM state after each token."""
        return self._stack([np.hstack(blocks) for blocks in self._state_norm])

    @staticmethod
    def _stack(columns):
        return np.stack(columns, axis=1).astype(np.float32)
