"""Every exception the package raises on bad input. Each message names the file and the problem.

All derive from MambaWasmError, so a caller (the web worker, the command line) can catch one
type and show its message; subclasses let tests and callers tell the problems apart.
"""

import functools


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


class GGUFTruncatedError(GGUFError):
    """The bytes given end before the part of a .gguf file being read: a truncated file, or (for a
    page reading a file's header from its first bytes) a prefix that must grow."""


class TokenizerError(MambaWasmError):
    """tokenizer.json is missing, malformed, or of a type this BPE does not support."""


class InputError(MambaWasmError, ValueError):
    """Bad input at run time: an empty prompt, a token id out of range, a bad sampling parameter."""


def without_traceback(function):
    """Raise `function`'s MambaWasmError with no traceback and no chained exception.

    A traceback keeps every frame it passed through alive, and with them the locals of a failed
    load: the file buffers, a parsed header, the tensors read so far. Callers keep errors (Pyodide
    keeps the last one in sys.last_exc), so the message is all an error may carry.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except MambaWasmError as caught:
            error = caught
        del args, kwargs  # this frame is the new traceback's only one: it must hold no input
        error.__context__ = error.__cause__ = None
        raise error.with_traceback(None)

    return wrapper
