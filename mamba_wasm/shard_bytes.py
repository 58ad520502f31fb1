"""Which bytes of a checkpoint's weight files each shard needs, so that a worker receives only those.

A worker's WASM heap never shrinks: one that receives the whole file to cut its slice keeps the
file's size for good (908 MB per worker for 2 workers on mamba-130m, against 661 MB for one). So
the thread that holds the whole file (the page's first worker, which downloads and verifies it)
asks `cut_layout` for each shard's layout from the files' headers alone, copies the listed byte
ranges into one new safetensors file per weight file, and hands each worker only its files; the
worker loads them with shard_loader.load_shard_from_files(..., precut=True).

A cut tensor's bytes are np.take(tensor, indices, axis) laid out in C order: for each index of the
axes before `axis`, each run of consecutive indices is one contiguous byte range of the source.
"""

import json
from dataclasses import dataclass

import numpy as np

from .checkpoint import CONFIG_FILE, INDEX_FILE, SINGLE_FILE, _json_text, weight_map
from .config import config_from_json
from .errors import CheckpointError, ConfigError
from .safetensors import DTYPES, MAX_HEADER_BYTES, SafetensorsError, _check_entry, _check_metadata, _parse_header
from .shard_loader import cut_shape, tensor_cuts
from .sharded import plan_shards


@dataclass(frozen=True)
class CutFile:
    """One shard's part of one weight file: `header` (8-byte length + JSON, padded to 8 bytes) then
    the source's byte ranges `ranges` ((m, 2) int64: offset from the file's start, length), in order."""

    header: bytes
    ranges: np.ndarray

    @property
    def nbytes(self):
        return len(self.header) + int(self.ranges[:, 1].sum())


def header_length(prefix, source):
    """The whole header's length in bytes (8 + the JSON) from a file's first 8 bytes."""
    if len(prefix) < 8:
        raise SafetensorsError(f"{source}: {len(prefix)} bytes is too short for a safetensors file")
    n = int.from_bytes(bytes(prefix[:8]), "little")
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"{source}: header length {n} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    return 8 + n


def cut_layout(files, sizes, source, n_shards):
    """[{weight file name: CutFile}] for each of the n_shards shards.

    files: {file name: bytes} with config.json (and the index when sharded) whole and each weight
    file only its header (its first header_length bytes); sizes: {weight file name: its full size}.
    """
    if CONFIG_FILE not in files:
        raise ConfigError(f"{source}: {CONFIG_FILE} is missing")
    config = config_from_json(_json_text(files[CONFIG_FILE]), f"{source}/{CONFIG_FILE}")
    shards = plan_shards(config, n_shards)
    if SINGLE_FILE in files:
        names = [SINGLE_FILE]
    elif INDEX_FILE in files:
        names = sorted(set(weight_map(files, source).values()))
    else:
        raise CheckpointError(f"{source}: neither {SINGLE_FILE} nor {INDEX_FILE} is present")
    headers = {name: _read_header(files, sizes, name, source) for name in names}
    return [
        {name: _cut_file(entries, start, tensor_cuts(config, shard)) for name, (entries, start) in headers.items()}
        for shard in shards
    ]


def _read_header(files, sizes, name, source):
    """([(tensor name, dtype, shape, begin, end)] in file order, where the data starts), checked."""
    label = f"{source}/{name}"
    if name not in files:
        raise CheckpointError(f"{source}/{INDEX_FILE}: shard {name!r} is missing")
    raw = memoryview(files[name]).cast("B")
    start = header_length(raw, label)
    if len(raw) < start or sizes[name] < start:
        raise SafetensorsError(f"{label}: the header runs past the end of the file (truncated?)")
    header = _parse_header(raw[8:start], label)
    entries, metadata = [], header.pop("__metadata__", None)
    if metadata is not None:
        _check_metadata(metadata, label)
    for tensor, entry in header.items():
        dtype, shape, begin, end = _check_entry(tensor, entry, sizes[name] - start, label)
        entries.append((tensor, entry["dtype"], tuple(shape), begin, end))
    entries.sort(key=lambda e: e[3])
    return entries, start


def _cut_file(entries, start, cuts):
    header, ranges, offset = {}, [], 0
    for tensor, dtype, shape, begin, end in entries:
        cut = cuts.get(tensor)
        if cut is None or len(shape) <= cut[0] or shape[cut[0]] <= max(cut[1], default=-1):
            part = [(start + begin, end - begin)]  # whole (a mis-shaped tensor too: the loader names it)
            new_shape = shape
        else:
            part = _ranges(shape, DTYPES[dtype].itemsize, start + begin, cut)
            new_shape = cut_shape(shape, cut)
        nbytes = sum(length for _, length in part)
        header[tensor] = {"dtype": dtype, "shape": list(new_shape), "data_offsets": [offset, offset + nbytes]}
        ranges += part
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return CutFile(len(encoded).to_bytes(8, "little") + encoded, _merged(ranges))


def _ranges(shape, itemsize, begin, cut):
    """Byte ranges of np.take(tensor, indices, axis) in C order: per index of the outer axes, one
    range per run of consecutive indices."""
    axis, indices = cut
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64)) * itemsize  # bytes of one index along `axis`
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    runs = [(int(run[0]), len(run)) for run in np.split(np.asarray(indices), breaks) if len(run)]
    stride = shape[axis] * inner
    return [(begin + o * stride + first * inner, n * inner) for o in range(outer) for first, n in runs]


def _merged(ranges):
    """(m, 2) int64 ranges, neighbours that touch joined (out_proj's columns of one row of a
    1-shard plan are one range)."""
    merged = []
    for offset, length in ranges:
        if merged and merged[-1][0] + merged[-1][1] == offset:
            merged[-1][1] += length
        elif length:
            merged.append([offset, length])
    return np.array(merged, np.int64).reshape(-1, 2)


def cut_bytes(whole, cut):
    """The cut file's bytes from the whole file's (what the browser does in JavaScript; used natively and in tests)."""
    source = memoryview(whole).cast("B")
    out = bytearray(cut.nbytes)
    out[: len(cut.header)] = cut.header
    position = len(cut.header)
    for offset, length in cut.ranges.tolist():
        out[position : position + length] = source[offset : offset + length]
        position += length
    return out
