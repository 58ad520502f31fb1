"""Read and write .safetensors files with NumPy alone (Pyodide has no `safetensors` package).

The format (https://huggingface.co/docs/safetensors/index#format):
    8 bytes   N, the header length, unsigned 64-bit little-endian
    N bytes   a UTF-8 JSON object: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
              ..., "__metadata__": {str: str}} (optional metadata)
    the rest  the data; each tensor's bytes are data[b:e], little-endian, row-major.

Arrays are zero-copy views of the buffer (np.frombuffer), so a read-only `bytes` gives read-only
arrays. Every check the Rust reference does on the header (safetensors/src/tensor.rs, `validate`)
is done here too: the tensors tile the data section exactly, with no gap and nothing after the last
one. Each failure raises SafetensorsError naming the file, the tensor and the problem.

The header comes from whoever serves the file, so its cost is bounded before it becomes Python
objects: a 100 MB header of `{"x":[[],[],...]}` would be 33 million lists (15 s and 2.6 GB).
A tensor table is three levels deep (table, entry, shape) and needs about ten JSON values per
tensor, so more values or deeper nesting is refused after a scan that builds nothing.

The writer (`write_safetensors`, `safetensors_bytes`) lays a file out byte for byte as the Rust
library does (safetensors/src/tensor.rs, `prepare`), which tests/test_safetensors.py checks.
"""

import io
import json
import math
import re

import numpy as np

from .errors import SafetensorsError, without_traceback

# The Rust reader's limit (MAX_HEADER_SIZE): refuse a bigger header before reading any of it.
MAX_HEADER_BYTES = 100_000_000
# Commas plus opening brackets in the header: every JSON value but the first follows one, so this
# bounds the objects json.loads can build (at most twice it). A tensor entry uses about 10
# (mamba-130m's 268 tensors: 2,700), so this allows some 25,000 tensors in one file.
MAX_HEADER_ITEMS = 1 << 18
# table -> tensor entry -> shape / data_offsets (a dtype given as an object fails later, by name)
MAX_HEADER_DEPTH = 3
_COUNT_CHUNK = 1 << 20
# What the depth scan steps over: a whole string (brackets in it are text) or one bracket.
_STRINGS_AND_BRACKETS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')

# NumPy has no bfloat16. A one-field structured dtype keeps BF16 tensors zero-copy and
# distinguishable from plain uint16 ("U16"); to_float32 turns them into numbers.
BFLOAT16 = np.dtype([("bfloat16", "<u2")])

DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": BFLOAT16,
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
# The library writes tensors by dtype, largest first in the order of its Dtype enum, then by name:
# every tensor then starts at a multiple of its itemsize.
WRITE_ORDER = ["U64", "I64", "F64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "I8", "U8", "BOOL"]


@without_traceback  # a kept error must not keep this buffer and the parsed header alive
def read_safetensors(buffer, source="model.safetensors"):
    """Parse `buffer` (bytes, bytearray or memoryview) into {tensor name: array}.

    Arrays keep the file's dtype (BF16 as BFLOAT16); `source` names the file in error messages.
    """
    data = memoryview(buffer).cast("B")
    if len(data) < 8:
        raise SafetensorsError(
            f"{source}: {len(data)} bytes is too short for a safetensors file (its header length is 8 bytes)"
        )
    header_len = int.from_bytes(data[:8], "little")
    if header_len > MAX_HEADER_BYTES:
        raise SafetensorsError(
            f"{source}: header length {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit "
            "(corrupt, or not a safetensors file)"
        )
    if 8 + header_len > len(data):
        raise SafetensorsError(
            f"{source}: header length {header_len} bytes runs past the end of the {len(data)}-byte file (truncated?)"
        )
    header = _parse_header(data[8 : 8 + header_len], source)
    body = data[8 + header_len :]
    tensors = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            _check_metadata(entry, source)
            continue
        dtype, shape, begin, end = _check_entry(name, entry, len(body), source)
        try:
            tensors[name] = _view(body, dtype, shape, begin, end)
        except ValueError as exc:  # NumPy's limits: at most 64 axes, each dimension an index
            raise SafetensorsError(
                f"{source}: tensor {name!r}: shape {list(shape)!r:.200} is beyond NumPy's limits ({exc})"
            ) from None
        spans.append((begin, end, name))
    _check_tiling(spans, len(body), source)
    return tensors


def write_safetensors(file, tensors, metadata=None):
    """Write {name: array} to the binary file object `file`; `metadata` ({str: str}) goes into the
    header's __metadata__ when given, keys sorted. The header is padded with spaces to a multiple of 8."""
    rank = {name: i for i, name in enumerate(WRITE_ORDER)}
    dtypes = {}
    for name, array in tensors.items():
        dtype = DTYPE_NAMES.get(np.asarray(array).dtype)
        if dtype is None:
            raise SafetensorsError(f"tensor {name!r}: dtype {np.asarray(array).dtype} has no safetensors name "
                                   f"(supported: {', '.join(DTYPES)})")
        dtypes[name] = dtype
    order = sorted(tensors, key=lambda name: (rank[dtypes[name]], name))
    header, offset = {} if metadata is None else {"__metadata__": dict(sorted(metadata.items()))}, 0
    for name in order:
        nbytes = np.asarray(tensors[name]).nbytes
        header[name] = {"dtype": dtypes[name], "shape": list(np.shape(tensors[name])),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    file.write(len(encoded).to_bytes(8, "little"))
    file.write(encoded)
    for name in order:
        file.write(np.ascontiguousarray(tensors[name]).data)


def safetensors_bytes(tensors, metadata=None):
    """The bytes write_safetensors writes."""
    buffer = io.BytesIO()
    write_safetensors(buffer, tensors, metadata)
    return buffer.getvalue()


def to_float32(array):
    """Upcast a floating-point tensor (F32, F16, BF16, F64) to float32; F32 is returned as is."""
    if array.dtype == BFLOAT16:
        # bfloat16 is the top half of a float32: shift the 16 bits into place.
        bits = array.view("<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    if array.dtype == np.float32:
        return array
    return array.astype(np.float32)


def _parse_header(raw, source):
    _check_header_size(raw, source)
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SafetensorsError(f"{source}: header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{source}: header must be a JSON object, got {type(header).__name__}")
    return header


def _check_header_size(raw, source):
    """Refuse a header that cannot be a tensor table before json.loads builds it: too many values
    (counted in C, a megabyte at a time, so a huge one stops early), or nested deeper than a
    table (one pass over strings and brackets that builds no JSON objects)."""
    items = 0
    for start in range(0, len(raw), _COUNT_CHUNK):
        chunk = bytes(raw[start : start + _COUNT_CHUNK])
        items += chunk.count(b",") + chunk.count(b"[") + chunk.count(b"{")
        if items > MAX_HEADER_ITEMS:
            raise SafetensorsError(
                f"{source}: header holds more than {MAX_HEADER_ITEMS:,} JSON values (commas and brackets in "
                f"its first {start + len(chunk):,} bytes), more than this reader takes for a tensor table "
                "(about 10 per tensor): refused before parsing"
            )
    depth = 0
    for token in _STRINGS_AND_BRACKETS.finditer(raw):
        bracket = token.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > MAX_HEADER_DEPTH:
                raise SafetensorsError(
                    f"{source}: header nests deeper than a tensor table ({MAX_HEADER_DEPTH} levels: "
                    f"table, tensor entry, shape) at byte {token.start()}: refused before parsing"
                )
        elif bracket in (b"]", b"}"):
            depth -= 1


def _check_metadata(metadata, source):
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise SafetensorsError(f"{source}: __metadata__ must map strings to strings, got {metadata!r:.200}")


def _check_entry(name, entry, body_len, source):
    """Return (dtype, shape, begin, end) after checking every field of one header entry."""
    where = f"{source}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise SafetensorsError(f"{where}: entry must be an object, got {entry!r:.200}")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise SafetensorsError(f"{where}: entry has no {key!r}")
    dtype = DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        supported = ", ".join(DTYPES)
        raise SafetensorsError(f"{where}: dtype {entry['dtype']!r} is not supported (supported: {supported})")
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        raise SafetensorsError(f"{where}: shape must be a list of non-negative integers, got {shape!r:.200}")
    offsets = entry["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(x) for x in offsets)):
        raise SafetensorsError(f"{where}: data_offsets must be two non-negative integers, got {offsets!r:.200}")
    begin, end = offsets
    if begin > end or end > body_len:
        raise SafetensorsError(
            f"{where}: data_offsets [{begin}, {end}] are outside the {body_len}-byte data section (truncated file?)"
        )
    expected = math.prod(shape) * dtype.itemsize
    if end - begin != expected:
        raise SafetensorsError(
            f"{where}: data_offsets span {end - begin} bytes, but shape {shape} of {entry['dtype']} needs {expected}"
        )
    return dtype, tuple(shape), begin, end


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _view(body, dtype, shape, begin, end):
    count = (end - begin) // dtype.itemsize
    array = np.frombuffer(body, dtype=dtype, count=count, offset=begin).reshape(shape)
    # Misaligned float arrays work but every later operation on them is slow: copy once.
    return array if array.flags.aligned else array.copy()


def _check_tiling(spans, body_len, source):
    """The tensors must cover the data section exactly, as the Rust reader requires: a gap or
    bytes after the last tensor are data no tensor describes (or a file padded to look bigger)."""
    previous_end, previous_name = 0, None
    for begin, end, name in sorted(spans):
        if begin < previous_end:
            raise SafetensorsError(
                f"{source}: tensor {name!r} (data bytes {begin}-{end}) overlaps tensor {previous_name!r}"
            )
        if begin > previous_end:
            after = f"after tensor {previous_name!r}" if previous_name else "at the start of the data section"
            raise SafetensorsError(
                f"{source}: data bytes {previous_end}-{begin} {after} belong to no tensor "
                f"(before tensor {name!r}); the tensors must cover the data section with no gap"
            )
        previous_end, previous_name = end, name
    if previous_end < body_len:
        raise SafetensorsError(
            f"{source}: {body_len - previous_end:,} bytes after the last tensor (the tensors end at byte "
            f"{previous_end:,} of the {body_len:,}-byte data section); a safetensors file holds nothing after them"
        )
