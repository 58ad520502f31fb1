"""Checks at the door of the public API: token ids and a model's state, as a caller hands them in.

Without them a misuse surfaces as a NumPy error from deep inside the math (`model.step(42.7, state)`
was an IndexError, a state of another model "operands could not be broadcast"), or worse, silently
(a float id truncated, a float64 state accepted). Each check raises InputError saying what was
expected. They run once per call, not per layer, and cost a few microseconds: the common case (a
plain int token, a state made by new_state()) takes the first branch of each test.

Both architectures call them: model.py (Mamba-1) and mamba2.py (Mamba-2), with their own state shapes.
"""

import numbers

import numpy as np

from .errors import InputError

FLOAT32 = np.dtype(np.float32)  # compared with as a dtype: 4x cheaper than against the type np.float32


def check_token(token, vocab_size):
    """`token` as a Python int, after checking it is an integer id in [0, vocab_size)."""
    if type(token) is not int:
        if isinstance(token, bool) or not isinstance(token, (numbers.Integral, np.integer)):
            raise InputError(
                f"a token id must be an integer in [0, {vocab_size}), got {token!r} ({type(token).__name__}); "
                "tokenizer.encode(text) gives the ids of a text"
            )
        token = int(token)
    if not 0 <= token < vocab_size:
        raise InputError(f"token id {token} is out of range for a vocabulary of {vocab_size}")
    return token


def check_ids(ids, vocab_size):
    """`ids` (a list, tuple or 1-D integer array of token ids) as an int64 array (l,), checked."""
    if isinstance(ids, (str, bytes)):
        raise InputError(
            f"token ids must be a sequence of integers, got {type(ids).__name__} {ids!r:.40}: "
            "tokenizer.encode(text) gives the ids of a text"
        )
    try:
        array = np.asarray(ids)
    except ValueError as exc:  # ragged nested lists
        raise InputError(f"token ids must be a flat sequence of integers ({exc})") from None
    if array.ndim != 1:
        raise InputError(f"token ids must be a flat sequence of integers, got an array of shape {array.shape}")
    if array.size == 0:
        raise InputError("no tokens to run: the prompt is empty")
    if array.dtype.kind not in "iu":  # floats, bools, objects, strings: nothing is truncated silently
        raise InputError(
            f"token ids must be integers in [0, {vocab_size}), got {array.dtype} values such as {array[:1].tolist()[0]!r}"
        )
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocab_size:
        raise InputError(f"token id {low if low < 0 else high} is out of range for a vocabulary of {vocab_size}")
    return array.astype(np.int64, copy=False)


def check_state(state, state_type, shapes):
    """Check that `state` is a `state_type` whose arrays have this model's float32 `shapes`
    ({attribute: shape}) and can be updated in place: what the model's new_state() makes."""
    if not isinstance(state, state_type):
        raise InputError(
            f"the state must be a {state_type.__name__} from this model's new_state(), got {type(state).__name__}"
        )
    for name, shape in shapes.items():
        array = getattr(state, name)
        if type(array) is not np.ndarray or array.dtype != FLOAT32 or array.shape != shape \
                or not array.flags.writeable:
            raise InputError(f"the state does not fit this model: {_describe(name, array)}, "
                             f"expected float32 {shape} (make it with this model's new_state())")


def _describe(name, array):
    if not isinstance(array, np.ndarray):
        return f"{name} is a {type(array).__name__}"
    read_only = "" if array.flags.writeable else " (read-only)"
    return f"{name} is {array.dtype} {array.shape}{read_only}"
