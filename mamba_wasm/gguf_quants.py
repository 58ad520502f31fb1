"""GGML tensor types: their block sizes, and dequantisation to float32 with vectorised NumPy.

A GGML tensor is a sequence of rows (its first dimension, ne[0], is the row); each row is cut into
blocks of `block_size` numbers stored in `type_size` bytes. The layouts we decode (ggml's
ggml-common.h `block_*` structs; the reference decoders are ggml-quants.c `dequantize_row_*`):

    F32   1 number, 4 bytes     IEEE float32
    F16   1 number, 2 bytes     IEEE float16
    BF16  1 number, 2 bytes     the top half of a float32
    Q8_0  32 numbers, 34 bytes  d: f16 | q: 32 x int8                      x = d * q
    Q4_0  32 numbers, 18 bytes  d: f16 | q: 16 bytes of 4-bit pairs         x = d * (q - 8)
                                byte j holds number j (low nibble) and number j + 16 (high nibble)
    Q4_K  256 numbers, 144 bytes, 8 sub-blocks of 32:
                                d: f16 | dmin: f16 | scales: 12 bytes | q: 128 bytes
                                x = (d * sc[s]) * q - (dmin * m[s]) with 6-bit sc, m per sub-block s;
                                scales bytes 0-3: sc[0-3] (low 6 bits), 4-7: m[0-3] (low 6 bits),
                                8-11: sc[4-7] low 4 bits | m[4-7] high 4 bits, and the top 2 bits of
                                bytes 0-3 / 4-7 are the high bits of sc[4-7] / m[4-7];
                                q byte 32*c + j holds sub-block 2c number j (low nibble) and
                                sub-block 2c+1 number j (high nibble)
    Q6_K  256 numbers, 210 bytes, 16 sub-blocks of 16:
                                ql: 128 bytes (low 4 bits) | qh: 64 bytes (high 2 bits) |
                                scales: 16 x int8 | d: f16          x = (d * scale[s]) * (q - 32);
                                for each half h of 128 numbers: ql[64h + j] low nibble -> number
                                128h + j, high nibble -> 128h + 64 + j (j < 64); qh[32h + j] bits
                                2i..2i+1 -> number 128h + 32i + j (j < 32)

Every formula multiplies in the reference's order, so the float32 results are bit for bit those of
ggml and of the `gguf` Python package (tests/test_gguf_quants.py checks every type on random blocks).

Memory: a tensor is decoded CHUNK_NUMBERS numbers at a time into one float32 output array, so the
peak is that output plus a few float32 temporaries of one chunk (2 MB each), whatever the size.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GGMLType:
    name: str
    block_size: int  # numbers per block; rows must hold a whole number of blocks
    type_size: int  # bytes per block


# Every type ggml defines (ggml.h `enum ggml_type`), so a file is parsed and its size checked even
# when one of its tensors has a type we cannot decode; ids 4, 5 (Q4_2, Q4_3) and 31-33 are retired.
GGML_TYPES = {
    0: GGMLType("F32", 1, 4),
    1: GGMLType("F16", 1, 2),
    2: GGMLType("Q4_0", 32, 18),
    3: GGMLType("Q4_1", 32, 20),
    6: GGMLType("Q5_0", 32, 22),
    7: GGMLType("Q5_1", 32, 24),
    8: GGMLType("Q8_0", 32, 34),
    9: GGMLType("Q8_1", 32, 40),
    10: GGMLType("Q2_K", 256, 84),
    11: GGMLType("Q3_K", 256, 110),
    12: GGMLType("Q4_K", 256, 144),
    13: GGMLType("Q5_K", 256, 176),
    14: GGMLType("Q6_K", 256, 210),
    15: GGMLType("Q8_K", 256, 292),
    16: GGMLType("IQ2_XXS", 256, 66),
    17: GGMLType("IQ2_XS", 256, 74),
    18: GGMLType("IQ3_XXS", 256, 98),
    19: GGMLType("IQ1_S", 256, 50),
    20: GGMLType("IQ4_NL", 32, 18),
    21: GGMLType("IQ3_S", 256, 110),
    22: GGMLType("IQ2_S", 256, 82),
    23: GGMLType("IQ4_XS", 256, 136),
    24: GGMLType("I8", 1, 1),
    25: GGMLType("I16", 1, 2),
    26: GGMLType("I32", 1, 4),
    27: GGMLType("I64", 1, 8),
    28: GGMLType("F64", 1, 8),
    29: GGMLType("IQ1_M", 256, 56),
    30: GGMLType("BF16", 1, 2),
    34: GGMLType("TQ1_0", 256, 54),
    35: GGMLType("TQ2_0", 256, 66),
    39: GGMLType("MXFP4", 32, 17),
    40: GGMLType("NVFP4", 64, 36),
    41: GGMLType("Q1_0", 128, 18),
}

CHUNK_NUMBERS = 1 << 19  # numbers decoded per step: 2 MB float32 temporaries


def _scale(raw):
    """A float16 field of each block: (blocks, 2) bytes -> (blocks, 1) float32."""
    return raw.copy().view("<f2").astype(np.float32)


def _f32(raw):
    return raw.view("<f4")


def _float16(raw):
    return raw.view("<f2").astype(np.float32)


def _bfloat16(raw):
    return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)


def _q8_0(blocks):
    """(blocks, 34) -> (blocks, 32)."""
    d = _scale(blocks[:, :2])
    q = blocks[:, 2:].view(np.int8).astype(np.float32)
    return q * d


def _q4_0(blocks):
    """(blocks, 18) -> (blocks, 32)."""
    d = _scale(blocks[:, :2])
    packed = blocks[:, 2:]  # (blocks, 16)
    q = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.int8) - np.int8(8)  # (blocks, 32)
    return d * q.astype(np.float32)


def _q4_k_scales(scales):
    """(blocks, 12) packed 6-bit numbers -> sc (blocks, 8), m (blocks, 8) as uint8."""
    low, high, mixed = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = np.concatenate([low & 0x3F, (mixed & 0x0F) | ((low >> 2) & 0x30)], axis=1)
    m = np.concatenate([high & 0x3F, (mixed >> 4) | ((high >> 2) & 0x30)], axis=1)
    return sc, m


def _q4_k(blocks):
    """(blocks, 144) -> (blocks, 256)."""
    n = blocks.shape[0]
    d = _scale(blocks[:, 0:2])
    dmin = _scale(blocks[:, 2:4])
    sc, m = _q4_k_scales(blocks[:, 4:16])
    scale = (d * sc.astype(np.float32))[:, :, None]  # (blocks, 8, 1)
    offset = (dmin * m.astype(np.float32))[:, :, None]  # (blocks, 8, 1)
    packed = blocks[:, 16:].reshape(n, 4, 1, 32)  # (blocks, pair of sub-blocks, 1, 32)
    q = np.concatenate([packed & 0x0F, packed >> 4], axis=2).reshape(n, 8, 32).astype(np.float32)
    return (scale * q - offset).reshape(n, 256)


def _q6_k(blocks):
    """(blocks, 210) -> (blocks, 256)."""
    n = blocks.shape[0]
    ql = blocks[:, 0:128].reshape(n, 2, 1, 64)  # (blocks, half, 1, 64)
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)  # (blocks, half, 1, 32)
    scales = blocks[:, 192:208].view(np.int8).astype(np.float32)  # (blocks, 16)
    d = _scale(blocks[:, 208:210])
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32)  # (blocks, half, quarter, 32)
    high = np.concatenate([(qh >> shift) & 0x03 for shift in (0, 2, 4, 6)], axis=2)  # (blocks, half, quarter, 32)
    q = (low | (high << 4)).astype(np.int8) - np.int8(32)
    scale = (d * scales)[:, :, None]  # (blocks, 16, 1)
    return (scale * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, 256)


# type name -> decoder of (blocks, type_size) uint8 -> (blocks, block_size) float32
_ELEMENTWISE = {"F32": _f32, "F16": _float16, "BF16": _bfloat16}
_BLOCKWISE = {"Q8_0": _q8_0, "Q4_0": _q4_0, "Q4_K": _q4_k, "Q6_K": _q6_k}
SUPPORTED = tuple(_ELEMENTWISE) + tuple(_BLOCKWISE)


def dequantize(raw, ggml_type, shape):
    """float32 array of `shape` (NumPy order, rows last) from the tensor's bytes `raw` (uint8).

    F32 is a zero-copy view of the bytes; the caller has checked that `raw` holds exactly the
    bytes `shape` needs and that the type is in SUPPORTED.
    """
    if ggml_type.name in _ELEMENTWISE:
        array = _ELEMENTWISE[ggml_type.name](raw).reshape(shape)
        # A misaligned float array works, but every later operation on it is slow: copy once.
        return array if array.flags.aligned else array.copy()
    decode = _BLOCKWISE[ggml_type.name]
    blocks = raw.reshape(-1, ggml_type.type_size)  # (blocks, type_size)
    out = np.empty((blocks.shape[0], ggml_type.block_size), np.float32)
    step = CHUNK_NUMBERS // ggml_type.block_size
    for start in range(0, blocks.shape[0], step):
        out[start : start + step] = decode(blocks[start : start + step])
    return out.reshape(shape)
