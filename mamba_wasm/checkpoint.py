"""Load a checkpoint folder (config.json + safetensors, one file or sharded) into a Mamba or
Mamba-2 model (the architecture comes from config.json: config.py); a llama.cpp .gguf file goes
to gguf_checkpoint.py.

Two entry points share one path: `load_model(path)` reads a folder on disk;
`load_model_from_files(files, source)` takes {file name: bytes} (the web worker fetches the
bytes in JavaScript and hands them over). Every tensor is checked for presence, shape, dtype and
finiteness, and converted one at a time to float32, so the peak memory is the file bytes plus
one float32 copy of the model; F32 tensors stay zero-copy views of the file bytes.

Unexpected tensors are refused rather than ignored: in these checkpoints an extra tensor means
config.json does not describe the file (say a bias the config turns off), and ignoring it
would silently change the outputs.

The files may come from a server that is broken or hostile, so config.json bounds them: weight
files larger than its tensors can fill are refused before they are read, an index may name at most
MAX_SHARDS shards, and each shard must be a plain file name (no path, no URL syntax).
"""

import json
import os
import re

import numpy as np

from .config import config_from_json
from .errors import CheckpointError, ConfigError, without_traceback
from .gguf import read_gguf
from .gguf_checkpoint import is_gguf, load_gguf_model
from .mamba2 import Mamba2
from .model import Mamba
from .safetensors import DTYPE_NAMES, read_safetensors, to_float32
from .tokenizer import Tokenizer
from .weights import LayerWeights, Mamba2LayerWeights, MambaWeights

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.json"
FLOAT_DTYPES = ("F32", "F16", "BF16")

# The one place checkpoint keys are named. Both layouts use the same keys except the
# embedding's: transformers renamed `embedding` to `embeddings`. So do both architectures, but
# for the mixer's.
EMBEDDING_KEY = {"hf": "backbone.embeddings.weight", "original": "backbone.embedding.weight"}
NORM_F_KEY = "backbone.norm_f.weight"
LM_HEAD_KEY = "lm_head.weight"
LAYER_PREFIX = "backbone.layers.{i}."

# Weight files may exceed the tensors' float32 size by this much each (the JSON header: ~25 kB for
# mamba-130m); more is data no tensor describes (a tiny model followed by gigabytes).
HEADER_SLACK_BYTES = 1_048_576
WIDEST_DTYPE_BYTES = 4  # F32, the widest of FLOAT_DTYPES
# Checkpoints in the wild have one to a few hundred shards; every shard is one more download.
MAX_SHARDS = 256
# A shard name is joined to the checkpoint folder's path or URL, so it must not be able to leave
# it: letters, digits and . _ - + only (no / \\ : ? # % or spaces), and not "." or "..". The page
# checks the same pattern (facts.js).
PLAIN_FILE_NAME_PATTERN = r"[A-Za-z0-9._+-]{1,255}"
_PLAIN_FILE_NAME = re.compile(PLAIN_FILE_NAME_PATTERN)


def _layer_keys(c):
    """LayerWeights field -> (key after LAYER_PREFIX, shape in the file); None when the config
    has no such tensor. Shapes as in transformers' MambaMixer.__init__."""
    return {
        "norm": ("norm.weight", (c.d_model,)),
        "in_proj": ("mixer.in_proj.weight", (2 * c.d_inner, c.d_model)),
        "in_proj_bias": ("mixer.in_proj.bias", (2 * c.d_inner,)) if c.proj_bias else None,
        "conv": ("mixer.conv1d.weight", (c.d_inner, 1, c.d_conv)),  # nn.Conv1d(groups=d_in)
        "conv_bias": ("mixer.conv1d.bias", (c.d_inner,)) if c.conv_bias else None,
        "x_proj": ("mixer.x_proj.weight", (c.dt_rank + 2 * c.d_state, c.d_inner)),
        "dt_proj": ("mixer.dt_proj.weight", (c.d_inner, c.dt_rank)),
        "dt_proj_bias": ("mixer.dt_proj.bias", (c.d_inner,)),
        "A": ("mixer.A_log", (c.d_inner, c.d_state)),
        "D": ("mixer.D", (c.d_inner,)),
        "out_proj": ("mixer.out_proj.weight", (c.d_model, c.d_inner)),
        "out_proj_bias": ("mixer.out_proj.bias", (c.d_model,)) if c.proj_bias else None,
    }


def _mamba2_layer_keys(c):
    """Mamba2LayerWeights field -> (key after LAYER_PREFIX, shape in the file); None when the
    config has no such tensor. Shapes as in transformers' Mamba2Mixer.__init__ (mamba_ssm's
    Mamba2 names them alike)."""
    d, d_in, h, e = c.d_model, c.d_inner, c.n_heads, c.conv_dim
    return {
        "norm": ("norm.weight", (d,)),
        "in_proj": ("mixer.in_proj.weight", (d_in + e + h, d)),
        "in_proj_bias": ("mixer.in_proj.bias", (d_in + e + h,)) if c.proj_bias else None,
        "conv": ("mixer.conv1d.weight", (e, 1, c.d_conv)),  # nn.Conv1d(groups=e)
        "conv_bias": ("mixer.conv1d.bias", (e,)) if c.conv_bias else None,
        "dt_bias": ("mixer.dt_bias", (h,)),
        "A": ("mixer.A_log", (h,)),
        "D": ("mixer.D", (h,)),
        "gated_norm": ("mixer.norm.weight", (d_in,)),
        "out_proj": ("mixer.out_proj.weight", (d, d_in)),
        "out_proj_bias": ("mixer.out_proj.bias", (d,)) if c.proj_bias else None,
    }


# config.architecture -> (one layer's tensors, the record that holds them, the model)
ARCHITECTURES = {
    "Mamba-1": (_layer_keys, LayerWeights, Mamba),
    "Mamba-2": (_mamba2_layer_keys, Mamba2LayerWeights, Mamba2),
}


@without_traceback  # a kept error must not keep the files' bytes and tensors alive
def load_model(path):
    """Load the checkpoint folder `path`: config.json plus model.safetensors, or
    model.safetensors.index.json plus the shards it names; or one llama.cpp .gguf file."""
    if is_gguf(path) and os.path.isfile(path):
        return load_gguf_model(read_gguf(_read(os.path.dirname(path), os.path.basename(path)), path))
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: not a folder (expected a checkpoint folder with {CONFIG_FILE}, or a .gguf file)")
    return load_model_from_files(read_folder(path), path)


def from_pretrained(path):
    """(model, tokenizer) from a checkpoint folder: config.json, the safetensors file(s) and
    tokenizer.json, as transformers' from_pretrained gives them for a local folder; or from one
    llama.cpp .gguf file, which holds both."""
    if is_gguf(path) and os.path.isfile(path):
        gguf = read_gguf(_read(os.path.dirname(path), os.path.basename(path)), path)
        return load_gguf_model(gguf), Tokenizer.from_gguf(gguf)
    model = load_model(path)
    return model, Tokenizer.from_file(os.path.join(path, TOKENIZER_FILE))


def read_folder(path):
    """{file name: bytes} of the checkpoint files present in folder `path`; what is missing is
    reported by load_model_from_files, which knows what the files should hold. Weight files larger
    than config.json implies are refused before they are read."""
    files = {}
    for name in (CONFIG_FILE, INDEX_FILE):
        if os.path.isfile(os.path.join(path, name)):
            files[name] = _read(path, name)
    weight_files = [SINGLE_FILE]
    if not os.path.isfile(os.path.join(path, SINGLE_FILE)) and INDEX_FILE in files:
        weight_files = sorted(set(weight_map(files, path).values()))
    present = [name for name in weight_files if os.path.isfile(os.path.join(path, name))]
    sizes = {name: os.path.getsize(os.path.join(path, name)) for name in present}
    config = _config_if_readable(files, path)
    if config is not None:
        _check_weight_bytes(sizes, config, path)
    for name in present:
        files[name] = _read(path, name)
    return files


@without_traceback  # a kept error must not keep the files' bytes and tensors alive
def load_model_from_files(files, source):
    """Build the model from {file name: bytes-like}; `source` (a folder or URL) names the
    checkpoint in error messages. A .gguf file among them is the whole checkpoint."""
    ggufs = [name for name in files if is_gguf(name)]
    if len(ggufs) > 1:
        raise CheckpointError(f"{source}: several .gguf files ({', '.join(sorted(ggufs))}); give one")
    if ggufs:
        return load_gguf_model(read_gguf(files[ggufs[0]], f"{source}/{ggufs[0]}"))
    if CONFIG_FILE not in files:
        raise ConfigError(f"{source}: {CONFIG_FILE} is missing")
    config = config_from_json(_json_text(files[CONFIG_FILE]), f"{source}/{CONFIG_FILE}")
    shards = weight_map(files, source).values() if SINGLE_FILE not in files and INDEX_FILE in files else ()
    sizes = {name: memoryview(files[name]).nbytes for name in {SINGLE_FILE, *shards} if name in files}
    _check_weight_bytes(sizes, config, source)
    _, _, model = ARCHITECTURES[config.architecture]
    return model(config, load_weights(files, config, source))


def max_weight_bytes(config, n_files=1):
    """The most bytes `n_files` weight files of a checkpoint described by `config` can honestly
    hold: every tensor it implies (an lm_head too: a tied file may still carry one) in the widest
    dtype, plus HEADER_SLACK_BYTES per file. From the config's arithmetic, so a config claiming
    10**9 layers costs nothing here."""
    lm_head = config.vocab_size * config.d_model if config.tie_embeddings else 0
    return (config.n_params() + lm_head) * WIDEST_DTYPE_BYTES + n_files * HEADER_SLACK_BYTES


def _check_weight_bytes(sizes, config, source):
    """Refuse weight files ({name: size}) larger than config.json implies, before reading them."""
    total, limit = sum(sizes.values()), max_weight_bytes(config, max(1, len(sizes)))
    if total > limit:
        what = f"{source}/{next(iter(sizes))} is" if len(sizes) == 1 else f"{source}: the {len(sizes)} shards are"
        raise CheckpointError(
            f"{what} {total:,} bytes, but config.json implies at most {limit:,} (its tensors as float32, plus "
            f"{HEADER_SLACK_BYTES:,} bytes per file for the header): refused before reading (data after the "
            "tensors, or a config.json that does not describe these files)"
        )


def _config_if_readable(files, source):
    """The config, or None when config.json is missing or bad: load_model_from_files reports that."""
    try:
        return config_from_json(_json_text(files[CONFIG_FILE]), f"{source}/{CONFIG_FILE}")
    except (KeyError, ConfigError):
        return None


def load_weights(files, config, source):
    """Read, check and convert every tensor the config implies into MambaWeights."""
    tensors, where = read_tensors(files, source)
    if config.n_layer > len(tensors):  # every layer has several tensors; don't list a billion names
        raise CheckpointError(
            f"{_files_label(files, source)}: config.json says {config.n_layer} layers, "
            f"but the file holds only {len(tensors)} tensors"
        )
    expected = _expected_keys(config)
    missing = [key for key in expected if key not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{_files_label(files, source)}: missing tensor {missing[0]!r}{more}")
    refuse_unexpected(tensors, where, expected)
    return assemble_weights(config, tensors, where, lambda key, shape: to_float32(
        checked_tensor(tensors, where, key, shape, _files_label(files, source))))


def refuse_unexpected(tensors, where, expected):
    """A tensor the config does not imply (other than lm_head.weight) means the config describes
    another model: name the first few. The sharded loader refuses with it too."""
    unexpected = sorted(set(tensors) - set(expected) - {LM_HEAD_KEY})
    if unexpected:
        names = ", ".join(repr(name) for name in unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise CheckpointError(
            f"{where[unexpected[0]]}: unexpected tensors {names} (does config.json describe this checkpoint?)"
        )


def assemble_weights(config, tensors, where, take):
    """MambaWeights of every tensor the config implies, each from take(key, full shape) (a float32
    array: the whole tensor, or the sharded loader's slice of it), refused when not finite."""

    def finite(key, shape):
        array = take(key, shape)
        if not np.isfinite(array).all():
            raise CheckpointError(f"{where[key]}: tensor {key!r} holds non-finite values (inf or nan)")
        return array

    embedding = finite(EMBEDDING_KEY[config.layout], (config.vocab_size, config.d_model))
    layer_keys, layer_weights, _ = ARCHITECTURES[config.architecture]
    layers = []
    for i in range(config.n_layer):
        fields = {}
        for field, spec in layer_keys(config).items():
            fields[field] = None if spec is None else finite(LAYER_PREFIX.format(i=i) + spec[0], spec[1])
        fields["conv"] = fields["conv"].reshape(fields["conv"].shape[0], config.d_conv)  # drop the groups axis
        fields["A"] = -np.exp(fields["A"])  # as both mixers' forward: A = -exp(A_log), done once here
        layers.append(layer_weights(**fields))
    norm_f = finite(NORM_F_KEY, (config.d_model,))
    return MambaWeights(
        embedding=embedding,
        layers=tuple(layers),
        norm_f=norm_f,
        lm_head=_lm_head(config, tensors, embedding, finite),
    )



def checked_tensor(tensors, where, key, shape, label):
    """tensors[key], checked to be there (else named against `label`, the files), of `shape` and of
    a float dtype; `where[key]` names the file that holds it. The sharded loader checks with it too."""
    if key not in tensors:
        raise CheckpointError(f"{label}: missing tensor {key!r}")
    array = tensors[key]
    if array.shape != shape:
        raise CheckpointError(f"{where[key]}: tensor {key!r} has shape {array.shape}, expected {shape} from config.json")
    dtype = DTYPE_NAMES[array.dtype]
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{where[key]}: tensor {key!r} has dtype {dtype}; supported: {', '.join(FLOAT_DTYPES)}")
    return array

def _lm_head(config, tensors, embedding, take):
    """Mirror each layout's reference. transformers (5.x) uses a file's lm_head.weight even when
    tie_word_embeddings is set, unless it equals the embedding; mamba_ssm's tie_weights always
    replaces it by the embedding when tie_embeddings is set."""
    shape = (config.vocab_size, config.d_model)
    if LM_HEAD_KEY in tensors and (config.layout == "hf" or not config.tie_embeddings):
        lm_head = take(LM_HEAD_KEY, shape)
        return embedding if config.tie_embeddings and np.array_equal(lm_head, embedding) else lm_head
    if config.tie_embeddings:
        return embedding
    return take(LM_HEAD_KEY, shape)  # untied and absent: take() reports it missing


def _expected_keys(config):
    keys = [EMBEDDING_KEY[config.layout], NORM_F_KEY]
    layer_keys, _, _ = ARCHITECTURES[config.architecture]
    specs = [spec for spec in layer_keys(config).values() if spec is not None]
    for i in range(config.n_layer):
        keys += [LAYER_PREFIX.format(i=i) + key for key, _ in specs]
    return keys


def read_tensors(files, source):
    """Return ({name: array}, {name: file label}), reading each safetensors file once."""
    if SINGLE_FILE in files:
        label = f"{source}/{SINGLE_FILE}"
        tensors = read_safetensors(files[SINGLE_FILE], label)
        return tensors, dict.fromkeys(tensors, label)
    if INDEX_FILE not in files:
        raise CheckpointError(f"{source}: neither {SINGLE_FILE} nor {INDEX_FILE} is present")
    shards_of = weight_map(files, source)
    tensors, where = {}, {}
    for shard in sorted(set(shards_of.values())):
        label = f"{source}/{shard}"
        if shard not in files:
            raise CheckpointError(f"{source}/{INDEX_FILE}: shard {shard!r} is missing")
        for name, array in read_safetensors(files[shard], label).items():
            if name in tensors:
                raise CheckpointError(f"{label}: tensor {name!r} is also in {where[name]}")
            tensors[name], where[name] = array, label
    for name, shard in shards_of.items():
        if name not in tensors:
            raise CheckpointError(f"{source}/{shard}: missing tensor {name!r} (listed in {INDEX_FILE})")
    return tensors, where


def weight_map(files, source):
    """{tensor name: shard file} from model.safetensors.index.json, checked."""
    label = f"{source}/{INDEX_FILE}"
    try:
        index = json.loads(_json_text(files[INDEX_FILE]))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{label}: not valid JSON ({exc})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(name, str) and isinstance(shard, str) for name, shard in weight_map.items()
    ):
        raise CheckpointError(f"{label}: expected an object with a 'weight_map' of tensor name -> shard file")
    shards = set(weight_map.values())
    if len(shards) > MAX_SHARDS:
        raise CheckpointError(
            f"{label}: the index names {len(shards):,} shard files; the limit is {MAX_SHARDS} "
            "(each is one more download: re-save the checkpoint in fewer, larger shards)"
        )
    for shard in sorted(shards):
        if not _PLAIN_FILE_NAME.fullmatch(shard) or shard in (".", ".."):
            raise CheckpointError(
                f"{label}: shard {shard!r:.100} must be a plain file name in the checkpoint folder "
                "(letters, digits and . _ - + only: no path, no percent-escapes)"
            )
    return weight_map


def _json_text(data):
    """json.loads takes str or bytes, but the worker may hand over a memoryview."""
    return data if isinstance(data, (str, bytes)) else bytes(data)


def _files_label(files, source):
    return f"{source}/{SINGLE_FILE if SINGLE_FILE in files else INDEX_FILE}"


def _read(folder, name):
    with open(os.path.join(folder, name), "rb") as file:
        return file.read()
