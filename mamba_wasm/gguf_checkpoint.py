"""Load a llama.cpp .gguf Mamba or Mamba-2 file into the same configs and weights as config.json + safetensors.

llama.cpp's converter (convert_hf_to_gguf.py, classes MambaModel and Mamba2Model; names in
gguf-py's tensor_mapping.py) writes the hyper-parameters as `<architecture>.*` metadata and renames
every tensor. The mapping onto ours is written once, here (ARCHITECTURES):

    metadata, after "mamba." / "mamba2."   MambaConfig              Mamba2Config
    embedding_length                       d_model                  d_model
    block_count                            n_layer                  n_layer
    ssm.inner_size                         d_inner                  d_inner
    ssm.state_size                         d_state                  d_state
    ssm.conv_kernel                        d_conv                   d_conv
    ssm.time_step_rank                     dt_rank                  n_heads (head_dim = d_inner / n_heads)
    ssm.group_count                        -                        n_groups
    attention.layer_norm_rms_epsilon       norm_eps                 norm_eps and gated_norm_eps
    rows of token_embd.weight              vocab_size (the converter pads it to a multiple of 8 / 16)
    blk.N.ssm_in.bias / ssm_conv1d.bias    proj_bias / conv_bias: present or not (GGUF has no flag)
    output.weight absent                   tie_embeddings
Mamba-2's chunk_size and dt_limit are not stored: 256 and (0, inf), mamba_ssm's defaults (llama.cpp
does not clip dt either).

Where the file differs from the HF layout (each undone or used as is below):
  - `ssm_a` holds A = -exp(A_log), already negated and exponentiated: used as is, so an F32 file
    gives the very A our safetensors path computes (up to torch's vs NumPy's exp, <= 1 ulp).
  - `ssm_conv1d.weight` is (d_in, k) (Mamba-2: (e, k)): the converter squeezed nn.Conv1d's groups axis.
  - Mamba-2 only: A and D are stored as (h, 1), the gated norm as (g, d_in / g), dt_bias as
    `ssm_dt.bias`: reshaped to ours (h,), (h,), (d_in,).
  - An lm_head equal to the embedding is left out by the converter: absent means tied.
  - 1-D tensors, norms, ssm_a/ssm_d and the conv weights stay F32 in every file the converter
    writes; only matrices are quantized, and we dequantize them to float32 at load.
Falcon-Mamba (`mamba.ssm.dt_b_c_rms` true: RMSNorms on dt, B and C) is refused.

Memory: tensors are dequantized one at a time (gguf_quants.py), so the peak is the file bytes plus
the float32 model plus the temporaries of one chunk. In the browser with its SIMD kernels
(load_gguf_model(packed=True)) Q8_0 matrices stay views of the file bytes (packed.py): a Q8_0 model
then takes about the file's size, plus float32 for the matrices of other types. F16, BF16, Q4_0,
Q4_K and Q6_K are always widened or dequantized to float32: the float32 kernel decodes faster than
widening halves at every token did (packed.py), and no kernel takes the others. F32 tensors stay
views of the file bytes when the model keeps the file anyway (an F32 matrix, or a packed one), and
are copied otherwise (norms, conv, A, D: about 1% of the model), so that a file whose matrices are
all widened or dequantized is freed once loaded (an F16 file's model takes its float32 size, not
that plus the file). weight_bytes says what stays, from the tensor table alone.
"""

import math
from dataclasses import dataclass

import numpy as np

from .config import Mamba2Config, MambaConfig, _checked, _checked_mamba2
from .errors import ConfigError, GGUFError
from .gguf import read_gguf
from .gguf_quants import SUPPORTED, dequantize
from .mamba2 import Mamba2
from .model import Mamba
from .packed import Q8Matrix
from .weights import LayerWeights, Mamba2LayerWeights, MambaWeights

EMBEDDING_KEY = "token_embd.weight"
NORM_F_KEY = "output_norm.weight"
LM_HEAD_KEY = "output.weight"
LAYER_PREFIX = "blk.{i}."
# What load_gguf_weights(packed=True) keeps as the file stores it: the matrices every token multiplies
# by (and the embedding, a tied lm_head), when their type is in PACKED (a packed kernel takes it).
PACKABLE_LAYER_KEYS = ("ssm_in.weight", "ssm_x.weight", "ssm_dt.weight", "ssm_out.weight")
PACKED = {"Q8_0": Q8Matrix}

# config field -> (metadata key after "<architecture>.", Python type), for both architectures
COMMON_KEYS = {
    "d_model": ("embedding_length", int),
    "n_layer": ("block_count", int),
    "d_inner": ("ssm.inner_size", int),
    "d_state": ("ssm.state_size", int),
    "d_conv": ("ssm.conv_kernel", int),
    "norm_eps": ("attention.layer_norm_rms_epsilon", float),
}


def _layer_keys(c):
    """LayerWeights field -> (key after LAYER_PREFIX, shape in NumPy order as the converter writes
    it, the shape we keep); None when the config has no such tensor."""
    d, d_in, n, r = c.d_model, c.d_inner, c.d_state, c.dt_rank
    return {
        "norm": ("attn_norm.weight", (d,), (d,)),
        "in_proj": ("ssm_in.weight", (2 * d_in, d), (2 * d_in, d)),
        "in_proj_bias": ("ssm_in.bias", (2 * d_in,), (2 * d_in,)) if c.proj_bias else None,
        "conv": ("ssm_conv1d.weight", (d_in, c.d_conv), (d_in, c.d_conv)),
        "conv_bias": ("ssm_conv1d.bias", (d_in,), (d_in,)) if c.conv_bias else None,
        "x_proj": ("ssm_x.weight", (r + 2 * n, d_in), (r + 2 * n, d_in)),
        "dt_proj": ("ssm_dt.weight", (d_in, r), (d_in, r)),
        "dt_proj_bias": ("ssm_dt.bias", (d_in,), (d_in,)),
        "A": ("ssm_a", (d_in, n), (d_in, n)),
        "D": ("ssm_d", (d_in,), (d_in,)),
        "out_proj": ("ssm_out.weight", (d, d_in), (d, d_in)),
        "out_proj_bias": ("ssm_out.bias", (d,), (d,)) if c.proj_bias else None,
    }


def _mamba2_layer_keys(c):
    """Mamba2LayerWeights field -> as _layer_keys. e = d_in + 2*g*n channels go through the conv."""
    d, d_in, h, e, g = c.d_model, c.d_inner, c.n_heads, c.conv_dim, c.n_groups
    return {
        "norm": ("attn_norm.weight", (d,), (d,)),
        "in_proj": ("ssm_in.weight", (d_in + e + h, d), (d_in + e + h, d)),
        "in_proj_bias": ("ssm_in.bias", (d_in + e + h,), (d_in + e + h,)) if c.proj_bias else None,
        "conv": ("ssm_conv1d.weight", (e, c.d_conv), (e, c.d_conv)),
        "conv_bias": ("ssm_conv1d.bias", (e,), (e,)) if c.conv_bias else None,
        "dt_bias": ("ssm_dt.bias", (h,), (h,)),
        "A": ("ssm_a", (h, 1), (h,)),
        "D": ("ssm_d", (h, 1), (h,)),
        "gated_norm": ("ssm_norm.weight", (g, d_in // g), (d_in,)),
        "out_proj": ("ssm_out.weight", (d, d_in), (d, d_in)),
        "out_proj_bias": ("ssm_out.bias", (d,), (d,)) if c.proj_bias else None,
    }


def _mamba_config(values, metadata, arch, source):
    return _checked(MambaConfig(
        dt_rank=_metadata(metadata, f"{arch}.ssm.time_step_rank", int, source),
        expand=max(1, values["d_inner"] // values["d_model"]),  # for display only: the math uses d_inner
        layout="gguf",
        **values,
    ), source)


def _mamba2_config(values, metadata, arch, source):
    n_heads = _metadata(metadata, f"{arch}.ssm.time_step_rank", int, source)
    return _checked_mamba2(Mamba2Config(
        n_heads=n_heads,
        head_dim=values["d_inner"] // n_heads,
        n_groups=_metadata(metadata, f"{arch}.ssm.group_count", int, source),
        chunk_size=256,
        dt_limit=(0.0, math.inf),
        gated_norm_eps=values["norm_eps"],  # llama.cpp's build_mamba2_layer uses the one epsilon
        expand=max(1, values["d_inner"] // values["d_model"]),  # for display only: the math uses d_inner
        layout="gguf",
        **values,
    ), source)


@dataclass(frozen=True)
class Architecture:
    """What differs between the two architectures a .gguf file may hold."""

    make_config: object  # (common values, metadata, architecture, source) -> config
    layer_keys: object  # config -> {field: (key, file shape, our shape) or None}
    layer_weights: type
    model: type


ARCHITECTURES = {
    "mamba": Architecture(_mamba_config, _layer_keys, LayerWeights, Mamba),
    "mamba2": Architecture(_mamba2_config, _mamba2_layer_keys, Mamba2LayerWeights, Mamba2),
}


def is_gguf(name):
    return str(name).lower().endswith(".gguf")


def load_gguf_model(gguf, packed=False):
    """A Mamba from a GGUFFile (mamba_wasm.gguf.read_gguf), or from the file's bytes. packed: keep
    Q8_0 matrices as the file holds them (packed.py; for the browser's SIMD kernels)."""
    gguf = gguf if hasattr(gguf, "tensors") else read_gguf(gguf)
    config = config_from_gguf(gguf)
    weights = load_gguf_weights(gguf, config, packed)
    return ARCHITECTURES[gguf.metadata["general.architecture"]].model(config, weights)


def config_from_gguf(gguf):
    source, metadata = gguf.source, gguf.metadata
    _check_single_file(metadata, source)
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        supported = ", ".join(repr(a) for a in ARCHITECTURES)
        raise GGUFError(f"{source}: architecture {arch!r} is not supported (supported: {supported})")
    if metadata.get(f"{arch}.ssm.dt_b_c_rms", False):
        raise GGUFError(f"{source}: {arch}.ssm.dt_b_c_rms is set (Falcon-Mamba's RMSNorms on dt, B, C): not supported")
    values = {field: _metadata(metadata, f"{arch}.{key}", kind, source) for field, (key, kind) in COMMON_KEYS.items()}
    embedding = gguf.tensors.get(EMBEDDING_KEY)
    if embedding is None:
        raise GGUFError(f"{source}: missing tensor {EMBEDDING_KEY!r}")
    if len(embedding.shape) != 2:
        raise GGUFError(f"{source}: tensor {EMBEDDING_KEY!r} has shape {embedding.shape}, expected (vocab, d_model)")
    first = LAYER_PREFIX.format(i=0)
    values.update(
        vocab_size=embedding.shape[0],
        proj_bias=first + "ssm_in.bias" in gguf.tensors,
        conv_bias=first + "ssm_conv1d.bias" in gguf.tensors,
        tie_embeddings=LM_HEAD_KEY not in gguf.tensors,
    )
    try:
        return ARCHITECTURES[arch].make_config(values, metadata, arch, source)
    except ConfigError as exc:  # the metadata contradict one another (say heads and inner size)
        raise GGUFError(str(exc)) from None


def load_gguf_weights(gguf, config, packed=False):
    """Read, check and dequantize every tensor the config implies into MambaWeights; with `packed`,
    the matrices that are Q8_0 (the embedding, lm_head and PACKABLE_LAYER_KEYS) stay in that form,
    views of the file's bytes."""
    source, tensors = gguf.source, gguf.tensors
    keeps_file = _keeps_file(gguf, packed)
    if config.n_layer > len(tensors):  # every layer has several tensors; don't list a billion names
        raise GGUFError(f"{source}: the metadata says {config.n_layer} layers, but the file holds only {len(tensors)} tensors")
    expected = _expected_keys(config, ARCHITECTURES[gguf.metadata["general.architecture"]])
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
        if packed and tensor.ggml_type.name in PACKED and _packable(key):
            value = PACKED[tensor.ggml_type.name].from_bytes(tensor.data, shape)
            finite = value.all_finite()
        else:
            value = dequantize(tensor.data, tensor.ggml_type, shape)
            if not keeps_file and np.may_share_memory(value, tensor.data):  # F32: dequantize gives a view
                value = value.copy()  # a view would hold the whole file in memory
            finite = np.isfinite(value).all()
        if not finite:
            raise GGUFError(f"{source}: tensor {key!r} holds non-finite values (inf or nan)")
        return value

    architecture = ARCHITECTURES[gguf.metadata["general.architecture"]]
    embedding = take(EMBEDDING_KEY, (config.vocab_size, config.d_model))
    layers = []
    for i in range(config.n_layer):
        fields = {}
        for field, spec in architecture.layer_keys(config).items():
            if spec is None:
                fields[field] = None
            elif spec[0] in PACKABLE_LAYER_KEYS:  # a matrix, kept as the file shapes it
                fields[field] = take(LAYER_PREFIX.format(i=i) + spec[0], spec[1])
            else:
                fields[field] = take(LAYER_PREFIX.format(i=i) + spec[0], spec[1]).reshape(spec[2])
        layers.append(architecture.layer_weights(**fields))
    norm_f = take(NORM_F_KEY, (config.d_model,))
    shape = (config.vocab_size, config.d_model)
    lm_head = embedding if config.tie_embeddings else take(LM_HEAD_KEY, shape)
    return MambaWeights(embedding=embedding, layers=tuple(layers), norm_f=norm_f, lm_head=lm_head)


def weight_bytes(gguf, packed):
    """The bytes the weights of `gguf` (its tensor table is enough) take once loaded: the file's
    tensor bytes when the loader keeps views of them (_keeps_file), plus the numbers of every tensor
    it does not keep as a view (widened or dequantized) as float32."""
    keeps_file = _keeps_file(gguf, packed)
    total = 0
    for name, tensor in gguf.tensors.items():
        numbers = math.prod(tensor.shape)
        kind = tensor.ggml_type
        in_file = numbers // kind.block_size * kind.type_size
        if keeps_file:
            total += in_file
        if not (keeps_file and _viewed(name, kind, packed)):
            total += 4 * numbers
    return total


def _keeps_file(gguf, packed):
    """Whether the loaded model keeps views of the file's bytes: when a matrix is kept as the file
    holds it (F32, or packed). Then its F32 tensors are views too; else they are copied."""
    return any(_packable(name) and _viewed(name, tensor.ggml_type, packed) for name, tensor in gguf.tensors.items())


def _viewed(name, kind, packed):
    """Whether the tensor `name` of type `kind` is a view of the file when the model keeps the file."""
    return kind.name == "F32" or (packed and kind.name in PACKED and _packable(name))


def _packable(name):
    """Whether the tensor `name` is one the loader may keep packed (the loader and weight_bytes agree)."""
    return name in (EMBEDDING_KEY, LM_HEAD_KEY) or name.split(".", 2)[-1] in PACKABLE_LAYER_KEYS


def _expected_keys(config, architecture):
    keys = [EMBEDDING_KEY, NORM_F_KEY] + ([] if config.tie_embeddings else [LM_HEAD_KEY])
    specs = [spec for spec in architecture.layer_keys(config).values() if spec is not None]
    for i in range(config.n_layer):
        keys += [LAYER_PREFIX.format(i=i) + spec[0] for spec in specs]
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
