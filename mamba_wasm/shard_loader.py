"""Load one shard of a checkpoint: only its slice of every tensor, never the whole model.

checkpoint.py's keys, shapes and checks, applied to slices (sharded.py says which part each shard holds):
    rows of     in_proj (its x rows and its z rows), conv1d, dt_proj, A_log, D, in_proj.bias,
                conv1d.bias, dt_proj.bias                                          (by channel)
    columns of  x_proj, out_proj                                                   (by channel)
    rows of     the embedding and lm_head                                          (by vocabulary)
    all of      the norms, out_proj.bias (on the residual stream, d: the same on every shard)

Each slice is converted to its own float32 array, also for F32 files (where checkpoint.py keeps
zero-copy views of the file): a shard must not keep the whole file's bytes alive, so once loaded
the caller can drop them and hold about 1/K of the model. Peak while loading: the file bytes plus
the shard's arrays.
"""

import numpy as np

from .checkpoint import (
    CONFIG_FILE,
    EMBEDDING_KEY,
    FLOAT_DTYPES,
    LAYER_PREFIX,
    LM_HEAD_KEY,
    NORM_F_KEY,
    _expected_keys,
    _files_label,
    _json_text,
    _layer_keys,
    _lm_head,
    read_folder,
    read_tensors,
)
from .config import config_from_json
from .errors import CheckpointError, ConfigError
from .safetensors import DTYPE_NAMES, to_float32
from .sharded import MambaShard, ShardedMamba, plan_shards
from .weights import LayerWeights, MambaWeights

# LayerWeights field -> the axis its channels lie along (0: rows, 1: columns); absent: replicated.
CHANNEL_AXIS = {
    "conv": 0,
    "conv_bias": 0,
    "x_proj": 1,
    "dt_proj": 0,
    "dt_proj_bias": 0,
    "A": 0,
    "D": 0,
    "out_proj": 1,
}


def load_sharded_model(path, n_shards):
    """All K shards of the checkpoint folder `path`, run in this process (ShardedMamba)."""
    files = read_folder(path)
    return ShardedMamba(load_shard_from_files(files, path, i, n_shards) for i in range(n_shards))


def load_shard_from_files(files, source, index, n_shards):
    """Shard `index` of `n_shards` from {file name: bytes-like} (as checkpoint.load_model_from_files)."""
    if CONFIG_FILE not in files:
        raise ConfigError(f"{source}: {CONFIG_FILE} is missing")
    config = config_from_json(_json_text(files[CONFIG_FILE]), f"{source}/{CONFIG_FILE}")
    shards = plan_shards(config, n_shards)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_shards:
        raise ConfigError(f"shard index must be an integer in 0..{n_shards - 1}, got {index!r}")
    shard = shards[index]
    return MambaShard(config, shard, _load_weights(files, config, shard, source))


def _load_weights(files, config, shard, source):
    tensors, where = read_tensors(files, source)
    expected = _expected_keys(config)
    unexpected = sorted(set(tensors) - set(expected) - {LM_HEAD_KEY})
    if unexpected:
        names = ", ".join(repr(name) for name in unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise CheckpointError(
            f"{where[unexpected[0]]}: unexpected tensors {names} (does config.json describe this checkpoint?)"
        )

    def take(key, shape, select=(slice(None),)):
        """The checked tensor `key` of full shape `shape`, cut by `select`, as its own float32 array."""
        if key not in tensors:
            raise CheckpointError(f"{_files_label(files, source)}: missing tensor {key!r}")
        array = tensors[key]
        if array.shape != shape:
            raise CheckpointError(
                f"{where[key]}: tensor {key!r} has shape {array.shape}, expected {shape} from config.json"
            )
        dtype = DTYPE_NAMES[array.dtype]
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{where[key]}: tensor {key!r} has dtype {dtype}; supported: {', '.join(FLOAT_DTYPES)}")
        part = array[select]
        converted = to_float32(part)
        if np.may_share_memory(converted, part):
            converted = converted.copy()  # a contiguous array of its own: the file's bytes can go
        if not np.isfinite(converted).all():
            raise CheckpointError(f"{where[key]}: tensor {key!r} holds non-finite values (inf or nan)")
        return converted

    channels, vocab = shard.channels, shard.vocab
    by_channel = slice(channels.start, channels.stop)
    by_vocab = (slice(vocab.start, vocab.stop),)
    layers = []
    for i in range(config.n_layer):
        fields = {}
        for field, spec in _layer_keys(config).items():
            if spec is None:
                fields[field] = None
                continue
            key, shape = LAYER_PREFIX.format(i=i) + spec[0], spec[1]
            if field in ("in_proj", "in_proj_bias"):  # rows [:d_in] give x, [d_in:] the gate z: this shard's of each
                z_rows = slice(config.d_inner + channels.start, config.d_inner + channels.stop)
                fields[field] = np.concatenate([take(key, shape, (by_channel,)), take(key, shape, (z_rows,))])
            elif field in CHANNEL_AXIS:
                select = (by_channel,) if CHANNEL_AXIS[field] == 0 else (slice(None), by_channel)
                fields[field] = take(key, shape, select)
            else:
                fields[field] = take(key, shape)
        fields["conv"] = fields["conv"].reshape(len(channels), config.d_conv)  # drop the groups axis
        fields["A"] = -np.exp(fields["A"])  # A = -exp(A_log), as checkpoint.py
        layers.append(LayerWeights(**fields))
    embedding = take(EMBEDDING_KEY[config.layout], (config.vocab_size, config.d_model), by_vocab)
    return MambaWeights(
        embedding=embedding,
        layers=tuple(layers),
        norm_f=take(NORM_F_KEY, (config.d_model,)),
        lm_head=_lm_head(config, tensors, embedding, lambda key, shape: take(key, shape, by_vocab)),
    )
