"""Load one shard of a checkpoint: only its slice of every tensor, never the whole model.

checkpoint.py's keys, shapes and checks, applied to slices (sharded.py says which part each shard holds):
    Mamba-1  rows of     in_proj (its x rows and its z rows), conv1d, dt_proj, A_log, D and their biases
             columns of  x_proj, out_proj
    Mamba-2  rows of     in_proj (its z, x, its groups' B and C, its heads' dt), conv1d (x, B, C),
                         dt_bias, A_log, D, the gated norm
             columns of  out_proj
    both     rows of     the embedding and lm_head (by vocabulary)
             all of      the block norms, norm_f, out_proj.bias (on the residual stream: on every shard)

Each slice is converted to its own float32 array, also for F32 files (where checkpoint.py keeps
zero-copy views of the file): a shard must not keep the whole file's bytes alive, so once loaded
the caller can drop them and hold about 1/K of the model. Peak while loading: the file bytes plus
the shard's arrays.

A worker that must never hold the whole file (its WASM heap keeps its peak size) loads from
"cut" files instead (precut=True): shard_bytes.py lays out, for each shard, safetensors files that
hold only its slices, whose bytes another thread copies out of the whole file. The checks are the
same, against each tensor's cut shape; F32 slices stay zero-copy views of those bytes, which are
the shard's own.
"""

import numpy as np

from .checkpoint import (
    ARCHITECTURES,
    CONFIG_FILE,
    EMBEDDING_KEY,
    LAYER_PREFIX,
    LM_HEAD_KEY,
    _expected_keys,
    _files_label,
    _json_text,
    assemble_weights,
    checked_tensor,
    read_folder,
    read_tensors,
    refuse_unexpected,
)
from .config import config_from_json
from .errors import ConfigError
from .safetensors import to_float32
from .sharded import Mamba1Mixers, MambaShard, ShardedMamba, plan_shards
from .sharded2 import Mamba2Mixers, conv_rows


def _mamba1_cuts(config, shard):
    """LayerWeights field -> (axis, indices) of the shard's part; absent: the whole tensor."""
    channels = np.arange(shard.channels.start, shard.channels.stop)
    rows = {field: (0, channels) for field in ("conv", "conv_bias", "dt_proj", "dt_proj_bias", "A", "D")}
    xz = np.concatenate([channels, config.d_inner + channels])  # in_proj's rows [:d_in] give x, [d_in:] z
    return {**rows, "in_proj": (0, xz), "in_proj_bias": (0, xz), "x_proj": (1, channels), "out_proj": (1, channels)}


def _mamba2_cuts(config, shard):
    """Mamba2LayerWeights field -> (axis, indices) of the shard's part; absent: the whole tensor."""
    channels = np.arange(shard.channels.start, shard.channels.stop)
    heads = np.arange(shard.heads.start, shard.heads.stop)
    xbc = conv_rows(config, shard)
    d_in, e = config.d_inner, config.conv_dim
    zxbcdt = np.concatenate([channels, d_in + xbc, d_in + e + heads])  # in_proj's rows: z, xBC, dt
    return {
        "in_proj": (0, zxbcdt),
        "in_proj_bias": (0, zxbcdt),
        "conv": (0, xbc),
        "conv_bias": (0, xbc),
        "dt_bias": (0, heads),
        "A": (0, heads),
        "D": (0, heads),
        "gated_norm": (0, channels),
        "out_proj": (1, channels),
    }


# config.architecture -> (the shard's part of each layer tensor, its mixers)
SHARDED = {"Mamba-1": (_mamba1_cuts, Mamba1Mixers), "Mamba-2": (_mamba2_cuts, Mamba2Mixers)}


def load_sharded_model(path, n_shards):
    """All K shards of the checkpoint folder `path`, run in this process (ShardedMamba)."""
    files = read_folder(path)
    return ShardedMamba(load_shard_from_files(files, path, i, n_shards) for i in range(n_shards))


def tensor_cuts(config, shard):
    """{tensor key: (axis, indices)} of the shard's part of every tensor it holds a part of; a key
    not listed (the norms, out_proj.bias) is held whole."""
    cuts_of, _ = SHARDED[config.architecture]
    cuts = cuts_of(config, shard)
    layer_keys, _, _ = ARCHITECTURES[config.architecture]
    by_key = {}
    for i in range(config.n_layer):
        for field, spec in layer_keys(config).items():
            if spec is not None and field in cuts:
                by_key[LAYER_PREFIX.format(i=i) + spec[0]] = cuts[field]
    by_vocab = (0, np.arange(shard.vocab.start, shard.vocab.stop))
    by_key[EMBEDDING_KEY[config.layout]] = by_vocab
    by_key[LM_HEAD_KEY] = by_vocab
    return by_key


def load_shard_from_files(files, source, index, n_shards, precut=False):
    """Shard `index` of `n_shards` from {file name: bytes-like} (as checkpoint.load_model_from_files);
    precut: the weight files hold only this shard's slices (shard_bytes.cut_layout)."""
    if CONFIG_FILE not in files:
        raise ConfigError(f"{source}: {CONFIG_FILE} is missing")
    config = config_from_json(_json_text(files[CONFIG_FILE]), f"{source}/{CONFIG_FILE}")
    shards = plan_shards(config, n_shards)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_shards:
        raise ConfigError(f"shard index must be an integer in 0..{n_shards - 1}, got {index!r}")
    shard = shards[index]
    _, mixers = SHARDED[config.architecture]
    return MambaShard(config, shard, _load_weights(files, config, shard, source, precut), mixers(config, shard))


def _load_weights(files, config, shard, source, precut):
    tensors, where = read_tensors(files, source)
    expected = _expected_keys(config)
    refuse_unexpected(tensors, where, expected)

    cuts = tensor_cuts(config, shard)

    def take(key, shape):
        """The checked tensor `key` of full shape `shape`, cut by cuts[key], as its own float32 array
        (precut: a view of the cut file's bytes when they are F32)."""
        cut = cuts.get(key)
        if precut and cut is not None:
            shape = cut_shape(shape, cut)
        array = checked_tensor(tensors, where, key, shape, _files_label(files, source))
        part = array if cut is None or precut else np.take(array, cut[1], axis=cut[0])  # a copy of the part only
        converted = to_float32(part)
        if not precut and np.may_share_memory(converted, array):
            converted = converted.copy()  # its own array: the file's bytes can go
        return converted

    return assemble_weights(config, tensors, where, take)


def cut_shape(shape, cut):
    """A tensor's shape once cut by (axis, indices)."""
    axis, indices = cut
    return (*shape[:axis], len(indices), *shape[axis + 1 :])
