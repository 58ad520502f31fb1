"""GGUF files for the page's tests, written from the committed fixtures (tests/fixtures/gguf/, made
by llama.cpp's converter through tests/make_gguf_fixtures.py): the fixture read with the package's
reader and written back with one thing changed. `write_gguf` is the format of mamba_wasm/gguf.py's
docstring, written field by field.

    oversized(fixture, padding)   a valid header claiming a model far over the page's heap limit
                                  (mamba-2.8b-like shapes, Q8_0), then `padding` bytes of tensor
                                  data; a long description pushes the tensor table past the first
                                  64 KiB, so the page must read a longer prefix
    with_magic / truncated / with_tensor_type / with_architecture   the broken files
"""

import struct
from types import SimpleNamespace

import numpy as np

from mamba_wasm.gguf import read_gguf
from mamba_wasm.gguf_checkpoint import EMBEDDING_KEY, LAYER_PREFIX, NORM_F_KEY, _layer_keys
from mamba_wasm.gguf_quants import GGML_TYPES

ALIGNMENT = 32
BOOL, INT32, INT64, FLOAT32, STRING, ARRAY = 7, 5, 11, 6, 8, 9
NUMPY_TYPE_IDS = {"|u1": 0, "|i1": 1, "<u2": 2, "<i2": 3, "<u4": 4, "<i4": 5, "<f4": 6, "|b1": 7,
                  "<u8": 10, "<i8": 11, "<f8": 12}
TYPE_IDS = {t.name: type_id for type_id, t in GGML_TYPES.items()}


def _string(text):
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _value(value):
    """(type id, bytes) of a metadata value as mamba_wasm.gguf.read_gguf returns it."""
    if isinstance(value, bool):
        return BOOL, struct.pack("<?", value)
    if isinstance(value, int):
        return (INT32, struct.pack("<i", value)) if -2**31 <= value < 2**31 else (INT64, struct.pack("<q", value))
    if isinstance(value, float):
        return FLOAT32, struct.pack("<f", value)
    if isinstance(value, str):
        return STRING, _string(value)
    if isinstance(value, list):
        return ARRAY, struct.pack("<IQ", STRING, len(value)) + b"".join(map(_string, value))
    array = np.asarray(value)
    return ARRAY, struct.pack("<IQ", NUMPY_TYPE_IDS[array.dtype.str], len(array)) + array.tobytes()


def write_gguf(metadata, tensors):
    """A GGUF v3 file: metadata {key: value}, tensors [(name, NumPy shape, type id, data bytes or
    None: the size its type and shape imply, left out of the file)]."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, value in metadata.items():
        type_id, raw = _value(value)
        head += _string(key) + struct.pack("<I", type_id) + raw
    data, offset = b"", 0
    for name, shape, type_id, raw in tensors:
        ggml_type = GGML_TYPES.get(type_id, GGML_TYPES[0])
        size = len(raw) if raw is not None else int(np.prod(shape)) // ggml_type.block_size * ggml_type.type_size
        head += _string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in reversed(shape))
        head += struct.pack("<IQ", type_id, offset)
        if raw is not None:
            data += raw + b"\0" * (-len(raw) % ALIGNMENT)
        offset += size + (-size % ALIGNMENT)
    return head + b"\0" * (-len(head) % ALIGNMENT) + data


def _parts(data):
    gguf = read_gguf(data, "fixture.gguf")
    tensors = [(t.name, t.shape, TYPE_IDS[t.ggml_type.name], t.data.tobytes()) for t in gguf.tensors.values()]
    return dict(gguf.metadata), tensors


def rewritten(data):
    """The fixture written back unchanged (what the other helpers change one thing of)."""
    return write_gguf(*_parts(data))


def with_magic(data, magic=b"GGML"):
    return magic + data[4:]


def truncated(data):
    """The header whole, the tensor data cut at two thirds."""
    return data[: len(data) * 2 // 3]


def with_tensor_type(data, type_id=99):
    """The first matrix's type replaced by `type_id` (99: no GGML type has it)."""
    metadata, tensors = _parts(data)
    i = next(i for i, t in enumerate(tensors) if len(t[1]) == 2)
    name, shape, _, raw = tensors[i]
    tensors[i] = (name, shape, type_id, raw)
    return write_gguf(metadata, tensors)


def with_architecture(data, architecture="llama"):
    metadata, tensors = _parts(data)
    return write_gguf({**metadata, "general.architecture": architecture}, tensors)


def oversized(data, padding):
    """A mamba-2.8b-shaped header (d_model 2560, 64 layers: 2.8e9 parameters, 11 GB as float32) over
    the fixture's tokenizer, matrices Q8_0, then `padding` zero bytes of tensor data."""
    metadata, _ = _parts(data)
    c = SimpleNamespace(d_model=2560, d_inner=5120, d_state=16, d_conv=4, dt_rank=160, n_layer=64,
                        proj_bias=False, conv_bias=True, vocab=50280)
    metadata.update({"general.description": "x" * 200_000, "mamba.embedding_length": c.d_model,
                     "mamba.block_count": c.n_layer, "mamba.ssm.inner_size": c.d_inner,
                     "mamba.ssm.state_size": c.d_state, "mamba.ssm.conv_kernel": c.d_conv,
                     "mamba.ssm.time_step_rank": c.dt_rank})
    q8 = TYPE_IDS["Q8_0"]
    tensors = [(EMBEDDING_KEY, (c.vocab, c.d_model), q8, None)]
    for i in range(c.n_layer):
        for key, shape, _ in filter(None, _layer_keys(c).values()):
            tensors.append((LAYER_PREFIX.format(i=i) + key, shape, q8 if len(shape) == 2 and shape[1] % 32 == 0 else 0, None))
    tensors.append((NORM_F_KEY, (c.d_model,), 0, None))
    return write_gguf(metadata, tensors) + b"\0" * padding
