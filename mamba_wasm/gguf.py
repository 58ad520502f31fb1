"""Read a .gguf file (llama.cpp's format) with NumPy alone: metadata, tensor table, tensor bytes.

The format (ggml/docs/gguf.md; the reference reader is ggml/src/gguf.cpp), all little-endian:
    header       magic "GGUF" | version u32 (2 or 3) | tensor count u64 | metadata count u64
    metadata     count x (key: string | value type u32 | value)
                 string = length u64 + UTF-8 bytes; array = element type u32 + count u64 + elements
    tensor table count x (name: string | n_dims u32 | n_dims x u64 dims, fastest first | type u32 |
                 offset u64, from the start of the data section, a multiple of the alignment)
    padding      to `general.alignment` (default 32)
    data         the tensors' bytes
Version 1 (32-bit counts) predates every Mamba file and is refused; so are big-endian files.

Tensor shapes are given in NumPy order (GGUF's dims reversed: a (rows, columns) matrix is stored as
ne = [columns, rows]), so they read like the PyTorch shapes the file was made from. Each tensor's
bytes are a zero-copy view of the buffer. Every count, length, offset and size is checked against
the bytes actually present before anything is allocated, so a corrupt or hostile file costs at
most its own size; each failure raises GGUFError naming the file and the problem.
"""

import math
import struct
from dataclasses import dataclass

import numpy as np

from .errors import GGUFError, GGUFTruncatedError
from .gguf_quants import GGML_TYPES, GGMLType

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS

# value type id -> (name, struct format or None for string / array)
VALUE_TYPES = {
    0: ("UINT8", "<B"),
    1: ("INT8", "<b"),
    2: ("UINT16", "<H"),
    3: ("INT16", "<h"),
    4: ("UINT32", "<I"),
    5: ("INT32", "<i"),
    6: ("FLOAT32", "<f"),
    7: ("BOOL", "<?"),
    8: ("STRING", None),
    9: ("ARRAY", None),
    10: ("UINT64", "<Q"),
    11: ("INT64", "<q"),
    12: ("FLOAT64", "<d"),
}
STRING, ARRAY = 8, 9
# The fewest bytes one metadata entry / tensor entry can take: what a count is checked against.
MIN_KV_BYTES = 8 + 4 + 1  # empty key, type, a one-byte value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # empty name, no dims, type, offset


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    ggml_type: GGMLType  # how the numbers are stored: F32, Q8_0, ...
    shape: tuple  # NumPy order: GGUF's dims reversed
    data: np.ndarray  # uint8, exactly the tensor's bytes (a view of the file's buffer); None if header_only


@dataclass(frozen=True)
class GGUFFile:
    source: str
    version: int
    alignment: int
    data_start: int  # where the tensor data begin: the bytes a header_only read needs
    metadata: dict  # key -> int | float | bool | str | list of str | 1-D NumPy array of numbers
    tensors: dict  # name -> GGUFTensor, in file order


class _Cursor:
    """Reads little-endian fields from the buffer, checking that each lies inside it."""

    def __init__(self, data, source):
        self.data = data
        self.pos = 0
        self.source = source

    def take(self, size, what):
        if size > len(self.data) - self.pos:
            raise GGUFTruncatedError(
                f"{self.source}: {what} at byte {self.pos} needs {size} bytes, but the file ends at "
                f"byte {len(self.data)} (truncated?)"
            )
        start = self.pos
        self.pos += size
        return self.data[start : self.pos]

    def scalar(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def u32(self, what):
        return self.scalar("<I", what)

    def u64(self, what):
        return self.scalar("<Q", what)

    def string(self, what):
        length = self.u64(f"length of {what}")
        raw = self.take(length, what)  # checked against the bytes left before any copy
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError(f"{self.source}: {what} is not valid UTF-8 ({exc})") from None

    def count(self, value, min_bytes_each, what):
        """A count read from the file, refused when its items cannot fit in the bytes left."""
        left = len(self.data) - self.pos
        if value * min_bytes_each > left:
            raise GGUFTruncatedError(
                f"{self.source}: {what} {value} cannot fit in the {left} bytes left in the file "
                "(corrupt or truncated)"
            )
        return value


def read_gguf(buffer, source="model.gguf", header_only=False):
    """Parse `buffer` (bytes, bytearray or memoryview) into a GGUFFile; `source` names it in errors.

    With header_only, `buffer` may be the file's first bytes only (through its tensor table: a
    page can learn what a file holds before downloading it); tensors then have no data.
    """
    data = memoryview(buffer).cast("B")
    cursor = _Cursor(data, source)
    magic = bytes(cursor.take(4, "the magic number"))
    if magic != MAGIC:
        raise GGUFError(f"{source}: not a GGUF file (it starts with {magic!r}, not {MAGIC!r})")
    version = cursor.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        if int.from_bytes(version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
            raise GGUFError(f"{source}: a big-endian GGUF file; only little-endian files are supported")
        raise GGUFError(f"{source}: GGUF version {version} is not supported (supported: 2, 3)")
    n_tensors = cursor.u64("the tensor count")
    n_kv = cursor.u64("the metadata count")
    cursor.count(n_kv, MIN_KV_BYTES, "metadata count")
    metadata = {}
    for _ in range(n_kv):
        key = cursor.string("a metadata key")
        if key in metadata:
            raise GGUFError(f"{source}: metadata key {key!r} appears twice")
        metadata[key] = _value(cursor, cursor.u32(f"the type of {key!r}"), key)
    alignment = _alignment(metadata, source)
    cursor.count(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor count")
    infos = [_tensor_info(cursor) for _ in range(n_tensors)]
    data_start = -(-cursor.pos // alignment) * alignment
    body = np.frombuffer(data, np.uint8, offset=min(data_start, len(data)))
    tensors = {}
    for name, ggml_type, shape, offset, size in infos:
        if name in tensors:
            raise GGUFError(f"{source}: tensor {name!r} appears twice")
        if offset % alignment:
            raise GGUFError(f"{source}: tensor {name!r}: offset {offset} is not a multiple of the alignment {alignment}")
        if header_only:
            tensors[name] = GGUFTensor(name, ggml_type, shape, None)
            continue
        if offset + size > len(body):
            raise GGUFError(
                f"{source}: tensor {name!r}: bytes {offset}-{offset + size} of the data section run past its "
                f"end ({len(body)} bytes; truncated file?)"
            )
        tensors[name] = GGUFTensor(name, ggml_type, shape, body[offset : offset + size])
    _check_no_overlap(infos, source)
    return GGUFFile(source=source, version=version, alignment=alignment, data_start=data_start, metadata=metadata,
                    tensors=tensors)


def _value(cursor, type_id, key):
    if type_id not in VALUE_TYPES:
        raise GGUFError(f"{cursor.source}: metadata {key!r} has unknown value type {type_id}")
    name, fmt = VALUE_TYPES[type_id]
    if type_id == STRING:
        return cursor.string(f"metadata {key!r}")
    if type_id != ARRAY:
        return cursor.scalar(fmt, f"metadata {key!r}")
    item_type = cursor.u32(f"the element type of {key!r}")
    if item_type not in VALUE_TYPES:
        raise GGUFError(f"{cursor.source}: metadata {key!r} is an array of unknown value type {item_type}")
    if item_type == ARRAY:
        raise GGUFError(f"{cursor.source}: metadata {key!r} is an array of arrays, which is not supported")
    n = cursor.u64(f"the length of {key!r}")
    if item_type == STRING:
        cursor.count(n, 8, f"length of the string array {key!r}:")
        return _strings(cursor, n, key)
    fmt = VALUE_TYPES[item_type][1]
    itemsize = struct.calcsize(fmt)
    cursor.count(n, itemsize, f"length of the array {key!r}:")
    return np.frombuffer(cursor.take(n * itemsize, f"metadata {key!r}"), fmt)


def _strings(cursor, n, key):
    """n strings: the loop of _Cursor.string, inlined (a vocabulary holds 50k tokens and 50k merges)."""
    data, pos, end = cursor.data, cursor.pos, len(cursor.data)
    unpack_length = struct.Struct("<Q").unpack_from
    strings = []
    for i in range(n):
        if end - pos < 8 or unpack_length(data, pos)[0] > end - pos - 8:
            cursor.pos = pos
            cursor.string(f"item {i} of {key!r}")  # raises the truncation error with its position
        length = unpack_length(data, pos)[0]
        pos += 8
        try:
            strings.append(str(data[pos : pos + length], "utf-8"))
        except UnicodeDecodeError as exc:
            raise GGUFError(f"{cursor.source}: item {i} of {key!r} is not valid UTF-8 ({exc})") from None
        pos += length
    cursor.pos = pos
    return strings


def _alignment(metadata, source):
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not (isinstance(alignment, int) and not isinstance(alignment, bool) and alignment > 0
            and alignment & (alignment - 1) == 0):
        raise GGUFError(f"{source}: general.alignment must be a power of two, got {alignment!r}")
    return alignment


def _tensor_info(cursor):
    """(name, GGMLType, NumPy shape, offset, byte size) of one tensor table entry."""
    source = cursor.source
    name = cursor.string("a tensor name")
    n_dims = cursor.u32(f"the dimension count of tensor {name!r}")
    if n_dims > MAX_DIMS:
        raise GGUFError(f"{source}: tensor {name!r} has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}")
    dims = [cursor.u64(f"dimension {i} of tensor {name!r}") for i in range(n_dims)]
    type_id = cursor.u32(f"the type of tensor {name!r}")
    offset = cursor.u64(f"the offset of tensor {name!r}")
    ggml_type = GGML_TYPES.get(type_id)
    if ggml_type is None:
        raise GGUFError(f"{source}: tensor {name!r} has unknown GGML type {type_id}")
    row = dims[0] if dims else 1
    if row % ggml_type.block_size:
        raise GGUFError(
            f"{source}: tensor {name!r}: rows of {row} numbers are not a whole number of "
            f"{ggml_type.name} blocks ({ggml_type.block_size} numbers each)"
        )
    size = math.prod(dims) // ggml_type.block_size * ggml_type.type_size
    return name, ggml_type, tuple(reversed(dims)), offset, size


def _check_no_overlap(infos, source):
    previous_end, previous_name = 0, None
    for offset, size, name in sorted((offset, size, name) for name, _, _, offset, size in infos):
        if size and offset < previous_end:
            raise GGUFError(f"{source}: tensor {name!r} (data bytes {offset}-{offset + size}) overlaps tensor {previous_name!r}")
        if offset + size > previous_end:
            previous_end, previous_name = offset + size, name
