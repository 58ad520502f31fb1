"""The model's hyper-parameters, read from config.json in either checkpoint layout.

Two architectures, each in two layouts with different key names for the same numbers:
  Mamba-1  "hf"       transformers' MambaForCausalLM (e.g. state-spaces/mamba-130m-hf)
           "original" the state-spaces/mamba repository (e.g. state-spaces/mamba-130m)
  Mamba-2  "hf"       transformers' Mamba2ForCausalLM (model_type "mamba2")
           "original" state-spaces/mamba with ssm_cfg.layer "Mamba2" (e.g. state-spaces/mamba2-130m)
The mapping from each layout's keys to ours is written once, here. Hybrids (attention or MLP
layers between the Mamba layers) are refused by name. A third layout, "gguf" (llama.cpp's files),
has no config.json: its metadata are mapped in gguf_checkpoint.py.
"""

import json
import math
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

    architecture = "Mamba-1"  # shown to users; Mamba2Config says "Mamba-2"

    def to_dict(self):
        return asdict(self)

    def n_params(self):
        """Parameters the checkpoint holds, from the config alone (before any weight is read):
        the tensors of transformers' MambaMixer, a tied lm_head counted once."""
        d, d_in, n, k, r, v = (self.d_model, self.d_inner, self.d_state, self.d_conv,
                               self.dt_rank, self.vocab_size)
        mixer = (d * 2 * d_in  # in_proj
                 + d_in * k + (d_in if self.conv_bias else 0)  # conv1d
                 + d_in * (r + 2 * n)  # x_proj
                 + r * d_in + d_in  # dt_proj (always with a bias)
                 + d_in * n + d_in  # A_log, D
                 + d_in * d + (2 * d_in + d if self.proj_bias else 0))  # out_proj; in/out biases
        per_layer = d + mixer  # + the block's RMSNorm
        return v * d + self.n_layer * per_layer + d + (0 if self.tie_embeddings else v * d)

    def state_nbytes(self):
        """Bytes of the float32 recurrent state: conv (n_layer, d_in, k) + ssm (n_layer, d_in, n)."""
        return 4 * self.n_layer * self.d_inner * (self.d_conv + self.d_state)


@dataclass(frozen=True)
class Mamba2Config:
    d_model: int  # d: width of the residual stream
    n_layer: int
    vocab_size: int  # v: rows of the embedding (already padded in the original layout)
    d_state: int  # n: state size per head channel
    d_conv: int  # k: causal convolution width
    expand: int
    d_inner: int  # d_in: expand * d_model = n_heads * head_dim
    n_heads: int  # h: each head has one scalar decay A and one time step dt
    head_dim: int  # p: channels per head
    n_groups: int  # g: heads in a group share B and C (as attention heads share keys in GQA)
    chunk_size: int  # the reference's chunk length in sequence mode (mamba2.py picks its own)
    dt_limit: tuple  # (low, high): the time step is clipped to it after the softplus
    norm_eps: float  # the blocks' RMSNorm
    gated_norm_eps: float  # the mixer's gated RMSNorm (mamba_ssm fixes it at 1e-5)
    proj_bias: bool  # bias on in_proj and out_proj
    conv_bias: bool
    tie_embeddings: bool
    layout: str  # one of SUPPORTED_LAYOUTS: decides the tensor names

    architecture = "Mamba-2"  # shown to users

    def to_dict(self):
        return asdict(self)

    @property
    def conv_dim(self):
        """Channels of the causal convolution: x (d_in), then B and C (g*n each)."""
        return self.d_inner + 2 * self.n_groups * self.d_state

    def n_params(self):
        """Parameters the checkpoint holds, from the config alone (before any weight is read):
        the tensors of transformers' Mamba2Mixer, a tied lm_head counted once."""
        d, d_in, h, k, v, e = (self.d_model, self.d_inner, self.n_heads, self.d_conv, self.vocab_size,
                               self.conv_dim)
        mixer = (d * (d_in + e + h) + ((d_in + e + h) + d if self.proj_bias else 0)  # in/out_proj biases
                 + e * k + (e if self.conv_bias else 0)  # conv1d
                 + 3 * h  # dt_bias, A_log, D
                 + d_in  # the gated RMSNorm
                 + d_in * d)  # out_proj
        per_layer = d + mixer  # + the block's RMSNorm
        return v * d + self.n_layer * per_layer + d + (0 if self.tie_embeddings else v * d)

    def state_nbytes(self):
        """Bytes of the float32 recurrent state: conv (n_layer, d_in + 2*g*n, k) + ssm (n_layer, h, p, n)."""
        return 4 * self.n_layer * (self.conv_dim * self.d_conv + self.n_heads * self.head_dim * self.d_state)


def config_from_json(text, source="config.json"):
    """Parse config.json (str or bytes) of either architecture and layout into a MambaConfig or
    a Mamba2Config."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    if "hidden_size" in raw:
        model_type = raw.get("model_type", "mamba")
        if model_type == "mamba2":
            return _mamba2_from_hf(raw, source)
        if model_type != "mamba":
            raise ConfigError(
                f"{source}: model_type {model_type!r} is not supported (supported: 'mamba', 'mamba2'; "
                "hybrids with attention layers are not)"
            )
        return _from_hf(raw, source)
    if "d_model" in raw:
        return _from_original(raw, source)
    raise ConfigError(
        f"{source}: unknown checkpoint layout (no 'hidden_size' or 'd_model' key); supported: "
        "transformers MambaForCausalLM and Mamba2ForCausalLM (hidden_size, num_hidden_layers, state_size, ...) "
        "and state-spaces/mamba (d_model, n_layer, ssm_cfg, ...)"
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


def _mamba2_from_hf(raw, source):
    """Keys of transformers' Mamba2Config; defaults are Mamba2Config's own (save_pretrained may
    leave out a key whose value is the default)."""
    get = _getter(raw, source)
    _refuse_unsupported(raw, source, (
        ("hidden_act", "silu", "activations other than silu"),
        ("norm_before_gate", False, "a gated RMSNorm applied before the gate"),
    ))
    d_model = get("hidden_size", int)
    expand = get("expand", int, 2)
    n_heads, head_dim = get("num_heads", int, 128), get("head_dim", int, 64)
    eps = get("layer_norm_epsilon", float, 1e-5)
    return _checked_mamba2(
        Mamba2Config(
            d_model=d_model,
            n_layer=get("num_hidden_layers", int),
            vocab_size=get("vocab_size", int),
            d_state=get("state_size", int, 128),
            d_conv=get("conv_kernel", int, 4),
            expand=expand,
            d_inner=expand * d_model,
            n_heads=n_heads,
            head_dim=head_dim,
            n_groups=get("n_groups", int, 8),
            chunk_size=get("chunk_size", int, 256),
            dt_limit=_dt_limit(raw.get("time_step_limit", [0.0, math.inf]), "time_step_limit", source),
            norm_eps=eps,
            gated_norm_eps=eps,
            proj_bias=get("use_bias", bool, False),
            conv_bias=get("use_conv_bias", bool, True),
            tie_embeddings=get("tie_word_embeddings", bool, False),
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
    _refuse_unsupported(raw, source, (
        ("rms_norm", True, "LayerNorm blocks"),
        ("attn_layer_idx", [], "attention layers: a hybrid model"),
        ("d_intermediate", 0, "MLP layers"),
    ))
    layer = ssm.get("layer", "Mamba1")
    if layer not in ("Mamba1", "Mamba2"):
        raise ConfigError(f"{source}: ssm_cfg.layer {layer!r} is not supported (supported: 'Mamba1', 'Mamba2')")
    multiple = get("pad_vocab_size_multiple", int, 8)
    if multiple <= 0:
        raise ConfigError(f"{source}: pad_vocab_size_multiple must be positive, got {multiple}")
    vocab = -(-get("vocab_size", int) // multiple) * multiple  # ceil in integers: a float overflows
    if layer == "Mamba2":
        return _mamba2_from_original(raw, ssm, vocab, source)
    d_model = get("d_model", int)
    expand = _typed(ssm, "expand", int, 2, source)
    return _checked(
        MambaConfig(
            d_model=d_model,
            n_layer=get("n_layer", int),
            vocab_size=vocab,
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


def _mamba2_from_original(raw, ssm, vocab, source):
    """ssm_cfg holds mamba_ssm's Mamba2(...) arguments; defaults are that class's own."""
    get = _getter(raw, source)
    _refuse_unsupported(ssm, source, (
        ("rmsnorm", True, "Mamba-2 layers without the gated RMSNorm"),
        ("norm_before_gate", False, "a gated RMSNorm applied before the gate"),
        ("D_has_hdim", False, "a skip D per channel instead of per head"),
        ("d_ssm", None, "a gated MLP beside the SSM"),
    ), prefix="ssm_cfg.")
    d_model = get("d_model", int)
    expand = _typed(ssm, "expand", int, 2, source)
    head_dim = _typed(ssm, "headdim", int, 64, source)
    if head_dim <= 0 or expand * d_model % head_dim:
        raise ConfigError(
            f"{source}: expand * d_model ({expand * d_model}) is not a multiple of ssm_cfg.headdim ({head_dim})"
        )
    return _checked_mamba2(
        Mamba2Config(
            d_model=d_model,
            n_layer=get("n_layer", int),
            vocab_size=vocab,
            d_state=_typed(ssm, "d_state", int, 128, source),
            d_conv=_typed(ssm, "d_conv", int, 4, source),
            expand=expand,
            d_inner=expand * d_model,
            n_heads=expand * d_model // head_dim,
            head_dim=head_dim,
            n_groups=_typed(ssm, "ngroups", int, 1, source),
            chunk_size=_typed(ssm, "chunk_size", int, 256, source),
            dt_limit=_dt_limit(ssm.get("dt_limit", [0.0, math.inf]), "ssm_cfg.dt_limit", source),
            norm_eps=get("norm_epsilon", float, 1e-5),
            gated_norm_eps=1e-5,  # mamba_ssm's Mamba2 builds RMSNormGated(eps=1e-5), whatever norm_epsilon says
            proj_bias=_typed(ssm, "bias", bool, False, source),
            conv_bias=_typed(ssm, "conv_bias", bool, True, source),
            tie_embeddings=get("tie_embeddings", bool, True),
            layout="original",
        ),
        source,
    )


def _refuse_unsupported(raw, source, checks, prefix=""):
    """checks: (key, the only value we support, what another value would mean)."""
    for key, supported, meaning in checks:
        if raw.get(key, supported) != supported:
            raise ConfigError(f"{source}: {prefix}{key}={raw[key]!r} is not supported ({meaning})")


def _dt_limit(value, key, source):
    """(low, high). transformers writes infinity as {"__float__": "Infinity"}, Python's json as Infinity."""
    def number(item):
        if isinstance(item, dict) and set(item) == {"__float__"} and item["__float__"] in ("Infinity", "-Infinity"):
            return float(item["__float__"].replace("Infinity", "inf"))
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            return float(item)
        raise ConfigError(f"{source}: key {key!r} must hold two numbers, got {value!r}")

    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{source}: key {key!r} must hold two numbers, got {value!r}")
    low, high = number(value[0]), number(value[1])
    if not 0 <= low < high:
        raise ConfigError(f"{source}: key {key!r} must be [low, high] with 0 <= low < high, got {value!r}")
    return (low, high)


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


def _checked_mamba2(config, source):
    c = _checked(config, source)
    for name in ("n_heads", "head_dim", "n_groups", "chunk_size"):
        if getattr(c, name) <= 0:
            raise ConfigError(f"{source}: {name} must be positive, got {getattr(c, name)}")
    if c.n_heads * c.head_dim != c.d_inner:
        raise ConfigError(
            f"{source}: num_heads * head_dim ({c.n_heads} * {c.head_dim}) must equal expand * hidden_size ({c.d_inner})"
        )
    if c.n_heads % c.n_groups:
        raise ConfigError(f"{source}: the {c.n_heads} heads do not split into {c.n_groups} groups (n_groups)")
    return c


def _checked(config, source):
    for name in ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "d_inner"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{source}: {name} must be positive, got {getattr(config, name)}")
    if not config.norm_eps > 0:
        raise ConfigError(f"{source}: the norm epsilon must be positive, got {config.norm_eps}")
    return config
