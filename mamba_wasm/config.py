"""The model's hyper-parameters, read from config.json in either checkpoint layout.

Two layouts exist in the wild, with different key names for the same numbers:
  "hf"       transformers' MambaForCausalLM (e.g. state-spaces/mamba-130m-hf)
  "original" the state-spaces/mamba repository (e.g. state-spaces/mamba-130m)
The mapping from each layout's keys to ours is written once, here; a third layout, "gguf"
(llama.cpp's files), has no config.json: its metadata are mapped in gguf_checkpoint.py.
"""

import json
from dataclasses import asdict, dataclass

from .errors import ConfigError

SUPPORTED_LAYOUTS = ("hf", "original", "gguf")


@dataclass(frozen=True)
class MambaConfig:
    d_model: int  # d: width of the residual stream
    n_layer: int
    vocab_size: int  # v: rows of the embedding (already padded in the original layout)
    d_state: int  # n: state size per channel
    d_conv: int  # k: causal convolution width
    expand: int
    d_inner: int  # d_in: expand * d_model
    dt_rank: int  # r: rank of the time-step projection
    norm_eps: float
    proj_bias: bool  # bias on in_proj and out_proj
    conv_bias: bool
    tie_embeddings: bool
    layout: str  # one of SUPPORTED_LAYOUTS: decides the tensor names

    def to_dict(self):
        return asdict(self)


def config_from_json(text, source="config.json"):
    """Parse config.json (str or bytes) of either layout into a MambaConfig."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    if "hidden_size" in raw:
        return _from_hf(raw, source)
    if "d_model" in raw:
        return _from_original(raw, source)
    raise ConfigError(
        f"{source}: unknown checkpoint layout (no 'hidden_size' or 'd_model' key); supported: "
        "transformers MambaForCausalLM (hidden_size, num_hidden_layers, state_size, ...) and "
        "state-spaces/mamba (d_model, n_layer, ssm_cfg, ...)"
    )


def _from_hf(raw, source):
    """Keys of transformers' MambaConfig; defaults are MambaConfig's own."""
    get = _getter(raw, source)
    d_model = get("hidden_size", int)
    expand = get("expand", int, 2)
    return _checked(
        MambaConfig(
            d_model=d_model,
            n_layer=get("num_hidden_layers", int),
            vocab_size=get("vocab_size", int),
            d_state=get("state_size", int, 16),
            d_conv=get("conv_kernel", int, 4),
            expand=expand,
            d_inner=get("intermediate_size", int, expand * d_model),
            dt_rank=_dt_rank(raw.get("time_step_rank", "auto"), d_model, source),
            norm_eps=get("layer_norm_epsilon", float, 1e-5),
            proj_bias=get("use_bias", bool, False),
            conv_bias=get("use_conv_bias", bool, True),
            tie_embeddings=get("tie_word_embeddings", bool, True),
            layout="hf",
        ),
        source,
    )


def _from_original(raw, source):
    """Keys of mamba_ssm's MambaConfig: the vocabulary is padded up to a multiple."""
    get = _getter(raw, source)
    ssm = raw.get("ssm_cfg") or {}
    if not isinstance(ssm, dict):
        raise ConfigError(f"{source}: 'ssm_cfg' must be an object")
    if ssm.get("layer", "Mamba1") != "Mamba1":
        raise ConfigError(f"{source}: ssm_cfg.layer {ssm['layer']!r} is not supported (only Mamba1)")
    # (key, the only value we support, what another value would mean)
    for key, supported, meaning in (
        ("rms_norm", True, "LayerNorm blocks"),
        ("attn_layer_idx", [], "attention layers"),
        ("d_intermediate", 0, "MLP layers"),
    ):
        if raw.get(key, supported) != supported:
            raise ConfigError(f"{source}: {meaning} ({key}={raw[key]!r}) are not supported")
    d_model = get("d_model", int)
    multiple = get("pad_vocab_size_multiple", int, 8)
    if multiple <= 0:
        raise ConfigError(f"{source}: pad_vocab_size_multiple must be positive, got {multiple}")
    vocab = get("vocab_size", int)
    expand = _typed(ssm, "expand", int, 2, source)
    return _checked(
        MambaConfig(
            d_model=d_model,
            n_layer=get("n_layer", int),
            vocab_size=-(-vocab // multiple) * multiple,  # ceil in integers: a float overflows
            d_state=_typed(ssm, "d_state", int, 16, source),
            d_conv=_typed(ssm, "d_conv", int, 4, source),
            expand=expand,
            d_inner=expand * d_model,
            dt_rank=_dt_rank(ssm.get("dt_rank", "auto"), d_model, source),
            norm_eps=get("norm_epsilon", float, 1e-5),
            proj_bias=_typed(ssm, "bias", bool, False, source),
            conv_bias=_typed(ssm, "conv_bias", bool, True, source),
            tie_embeddings=get("tie_embeddings", bool, True),
            layout="original",
        ),
        source,
    )


def _getter(raw, source):
    def get(key, kind, default=None):
        if key not in raw and default is None:
            raise ConfigError(f"{source}: missing required key {key!r}")
        return _typed(raw, key, kind, default, source)

    return get


def _typed(raw, key, kind, default, source):
    value = raw.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{source}: key {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _dt_rank(value, d_model, source):
    if value == "auto":
        return -(-d_model // 16)  # ceil in integers: a float overflows
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(f"{source}: time step rank must be 'auto' or a positive integer, got {value!r}")


def _checked(config, source):
    for name in ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "d_inner"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{source}: {name} must be positive, got {getattr(config, name)}")
    if not config.norm_eps > 0:
        raise ConfigError(f"{source}: the norm epsilon must be positive, got {config.norm_eps}")
    return config
