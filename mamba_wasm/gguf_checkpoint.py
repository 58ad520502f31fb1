"""Load a llama.cpp .gguf Mamba file into the same MambaConfig and MambaWeights as config.json + safetensors.

llama.cpp's converter (convert_hf_to_gguf.py, class MambaModel; names in gguf-py's
tensor_mapping.py) writes the hyper-parameters as `<architecture>.*` metadata and renames every
tensor. The mapping onto ours is written once, here:

    metadata (architecture "mamba")          MambaConfig
    mamba.embedding_length                   d_model
    mamba.block_count                        n_layer
    mamba.ssm.inner_size                     d_inner
    mamba.ssm.state_size                     d_state
    mamba.ssm.conv_kernel                    d_conv
    mamba.ssm.time_step_rank                 dt_rank
    mamba.attention.layer_norm_rms_epsilon   norm_eps
    rows of token_embd.weight                vocab_size (the converter pads it to a multiple of 8)
    blk.N.ssm_in.bias / ssm_conv1d.bias      proj_bias / conv_bias: present or not (GGUF has no flag)
    output.weight absent                     tie_embeddings

Where the file differs from the HF layout (each undone or used as is below):
  - `ssm_a` holds A = -exp(A_log), already negated and exponentiated: used as is, so an F32 file
    gives the very A our safetensors path computes (up to torch's vs NumPy's exp, <= 1 ulp).
  - `ssm_conv1d.weight` is (d_in, k): the converter squeezed nn.Conv1d's groups axis.
  - An lm_head equal to the embedding is left out by the converter: absent means tied.
  - 1-D tensors, norms, ssm_a/ssm_d and the conv weights stay F32 in every file the converter
    writes; only matrices are quantized, and we dequantize them to float32 at load.
Falcon-Mamba (`mamba.ssm.dt_b_c_rms` true: RMSNorms on dt, B and C) is refused, as is Mamba-2
(architecture "mamba2"), which the package does not run yet: ARCHITECTURES is where it goes.

Memory: tensors are dequantized one at a time (gguf_quants.py), so the peak is the file bytes plus
the float32 model plus the temporaries of one chunk; F32 tensors stay views of the file bytes.
"""

import numpy as np

from .config import MambaConfig
from .errors import GGUFError
from .gguf import read_gguf
from .gguf_quants import SUPPORTED, dequantize
from .model import Mamba
from .weights import LayerWeights, MambaWeights

ARCHITECTURES = ("mamba",)
EMBEDDING_KEY = "token_embd.weight"
NORM_F_KEY = "output_norm.weight"
LM_HEAD_KEY = "output.weight"
LAYER_PREFIX = "blk.{i}."

# MambaConfig field -> (metadata key after "<architecture>.", Python type)
CONFIG_KEYS = {
    "d_model": ("embedding_length", int),
    "n_layer": ("block_count", int),
    "d_inner": ("ssm.inner_size", int),
    "d_state": ("ssm.state_size", int),
    "d_conv": ("ssm.conv_kernel", int),
    "dt_rank": ("ssm.time_step_rank", int),
    "norm_eps": ("attention.layer_norm_rms_epsilon", float),
}


def _layer_keys(c):
    """LayerWeights field -> (key after LAYER_PREFIX, shape in NumPy order); None when the config
    has no such tensor. Shapes as the converter writes them (see the module docstring)."""
    return {
        "norm": ("attn_norm.weight", (c.d_model,)),
        "in_proj": ("ssm_in.weight", (2 * c.d_inner, c.d_model)),
        "in_proj_bias": ("ssm_in.bias", (2 * c.d_inner,)) if c.proj_bias else None,
        "conv": ("ssm_conv1d.weight", (c.d_inner, c.d_conv)),
        "conv_bias": ("ssm_conv1d.bias", (c.d_inner,)) if c.conv_bias else None,
        "x_proj": ("ssm_x.weight", (c.dt_rank + 2 * c.d_state, c.d_inner)),
        "dt_proj": ("ssm_dt.weight", (c.d_inner, c.dt_rank)),
        "dt_proj_bias": ("ssm_dt.bias", (c.d_inner,)),
        "A": ("ssm_a", (c.d_inner, c.d_state)),
        "D": ("ssm_d", (c.d_inner,)),
        "out_proj": ("ssm_out.weight", (c.d_model, c.d_inner)),
        "out_proj_bias": ("ssm_out.bias", (c.d_model,)) if c.proj_bias else None,
    }


def is_gguf(name):
    return str(name).lower().endswith(".gguf")


def load_gguf_model(gguf):
    """A Mamba from a GGUFFile (mamba_wasm.gguf.read_gguf), or from the file's bytes."""
    gguf = gguf if hasattr(gguf, "tensors") else read_gguf(gguf)
    config = config_from_gguf(gguf)
    return Mamba(config, load_gguf_weights(gguf, config))


def config_from_gguf(gguf):
    source, metadata = gguf.source, gguf.metadata
    _check_single_file(metadata, source)
    arch = metadata.get("general.architecture")
    if arch not in ARCHITECTURES:
        supported = ", ".join(repr(a) for a in ARCHITECTURES)
        raise GGUFError(f"{source}: architecture {arch!r} is not supported (supported: {supported})")
    if metadata.get(f"{arch}.ssm.dt_b_c_rms", False):
        raise GGUFError(f"{source}: {arch}.ssm.dt_b_c_rms is set (Falcon-Mamba's RMSNorms on dt, B, C): not supported")
    values = {field: _metadata(metadata, f"{arch}.{key}", kind, source) for field, (key, kind) in CONFIG_KEYS.items()}
    embedding = gguf.tensors.get(EMBEDDING_KEY)
    if embedding is None:
        raise GGUFError(f"{source}: missing tensor {EMBEDDING_KEY!r}")
    if len(embedding.shape) != 2:
        raise GGUFError(f"{source}: tensor {EMBEDDING_KEY!r} has shape {embedding.shape}, expected (vocab, d_model)")
    first = LAYER_PREFIX.format(i=0)
    return MambaConfig(
        vocab_size=embedding.shape[0],
        expand=max(1, values["d_inner"] // values["d_model"]),  # for display only: the math uses d_inner
        proj_bias=first + "ssm_in.bias" in gguf.tensors,
        conv_bias=first + "ssm_conv1d.bias" in gguf.tensors,
        tie_embeddings=LM_HEAD_KEY not in gguf.tensors,
        layout="gguf",
        **values,
    )


def load_gguf_weights(gguf, config):
    """Read, check and dequantize every tensor the config implies into MambaWeights."""
    source, tensors = gguf.source, gguf.tensors
    if config.n_layer > len(tensors):  # every layer has several tensors; don't list a billion names
        raise GGUFError(f"{source}: the metadata says {config.n_layer} layers, but the file holds only {len(tensors)} tensors")
    expected = _expected_keys(config)
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        names = ", ".join(repr(name) for name in unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise GGUFError(f"{source}: unexpected tensors {names} (do the metadata describe this file?)")

    def take(key, shape):
        tensor = tensors.get(key)
        if tensor is None:
            raise GGUFError(f"{source}: missing tensor {key!r}")
        if tensor.shape != shape:
            raise GGUFError(f"{source}: tensor {key!r} has shape {tensor.shape}, expected {shape} from the metadata")
        if tensor.ggml_type.name not in SUPPORTED:
            raise GGUFError(
                f"{source}: tensor {key!r} has type {tensor.ggml_type.name}; supported: {', '.join(SUPPORTED)}"
            )
        array = dequantize(tensor.data, tensor.ggml_type, shape)
        if not np.isfinite(array).all():
            raise GGUFError(f"{source}: tensor {key!r} holds non-finite values (inf or nan)")
        return array

    embedding = take(EMBEDDING_KEY, (config.vocab_size, config.d_model))
    layers = []
    for i in range(config.n_layer):
        fields = {}
        for field, spec in _layer_keys(config).items():
            fields[field] = None if spec is None else take(LAYER_PREFIX.format(i=i) + spec[0], spec[1])
        layers.append(LayerWeights(**fields))
    norm_f = take(NORM_F_KEY, (config.d_model,))
    shape = (config.vocab_size, config.d_model)
    lm_head = embedding if config.tie_embeddings else take(LM_HEAD_KEY, shape)
    return MambaWeights(embedding=embedding, layers=tuple(layers), norm_f=norm_f, lm_head=lm_head)


def _expected_keys(config):
    keys = [EMBEDDING_KEY, NORM_F_KEY] + ([] if config.tie_embeddings else [LM_HEAD_KEY])
    specs = [spec for spec in _layer_keys(config).values() if spec is not None]
    for i in range(config.n_layer):
        keys += [LAYER_PREFIX.format(i=i) + key for key, _ in specs]
    return keys


def _metadata(metadata, key, kind, source):
    if key not in metadata:
        raise GGUFError(f"{source}: missing metadata {key!r}")
    value = metadata[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) or not value > 0:
        raise GGUFError(f"{source}: metadata {key!r} must be a positive {kind.__name__}, got {value!r:.80}")
    return value


def _check_single_file(metadata, source):
    """llama.cpp's gguf-split cuts big models into several files; each holds part of the tensors."""
    count = metadata.get("split.count", 1)
    if count != 1:
        raise GGUFError(
            f"{source}: part of a model split into {count!r:.20} files; merge them into one .gguf first "
            "(llama.cpp: llama-gguf-split --merge)"
        )
