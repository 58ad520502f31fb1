"""Every exception the package raises on bad input. Each message names the file and the problem.

All derive from MambaWasmError, so a caller (the web worker, the command line) can catch one
type and show its message; subclasses let tests and callers tell the problems apart.
"""


class MambaWasmError(Exception):
    """Base class: a readable message meant for the user."""


class ConfigError(MambaWasmError):
    """config.json is missing, not JSON, lacks a key, or describes an unsupported layout."""


class CheckpointError(MambaWasmError):
    """A tensor is missing, has the wrong shape, or holds non-finite values; a shard is missing."""


class SafetensorsError(CheckpointError):
    """A .safetensors file is truncated or corrupt: header length, JSON, dtype or offsets."""


class GGUFError(CheckpointError):
    """A .gguf file is truncated or corrupt (header, metadata, tensor table, offsets), or holds a
    model, tensor type or tokenizer this package does not read."""


class TokenizerError(MambaWasmError):
    """tokenizer.json is missing, malformed, or of a type this BPE does not support."""


class InputError(MambaWasmError, ValueError):
    """Bad input at run time: an empty prompt, a token id out of range, a bad sampling parameter."""
