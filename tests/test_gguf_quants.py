"""Our dequantisation against the `gguf` package's (llama.cpp's own Python reference), bit for bit.

Random bytes are valid blocks of every type: the only constraint is that the float16 scales be
finite, which the test sets. Each case spans more than one chunk of the decoder's loop.
"""

import gguf
import numpy as np
import pytest

from mamba_wasm.gguf_quants import CHUNK_NUMBERS, GGML_TYPES, SUPPORTED, dequantize

# type name -> byte ranges of the float16 scales in one block
F16_FIELDS = {"Q8_0": [(0, 2)], "Q4_0": [(0, 2)], "Q4_K": [(0, 2), (2, 4)], "Q6_K": [(208, 210)]}


def random_blocks(type_name, n_blocks, rng):
    ggml_type = next(t for t in GGML_TYPES.values() if t.name == type_name)
    if type_name in ("F32", "F16"):
        values = rng.standard_normal(n_blocks).astype("<f4" if type_name == "F32" else "<f2")
        return ggml_type, values.view(np.uint8)
    if type_name == "BF16":
        return ggml_type, (rng.standard_normal(n_blocks).astype("<f4").view("<u4") >> 16).astype("<u2").view(np.uint8)
    blocks = rng.integers(0, 256, (n_blocks, ggml_type.type_size), dtype=np.uint8)
    for start, stop in F16_FIELDS[type_name]:
        blocks[:, start:stop] = rng.uniform(-2, 2, n_blocks).astype("<f2").view(np.uint8).reshape(n_blocks, 2)
    return ggml_type, blocks.reshape(-1)


def test_type_table_matches_the_reference():
    for type_id, ggml_type in GGML_TYPES.items():
        qtype = gguf.GGMLQuantizationType(type_id)
        assert qtype.name == ggml_type.name
        assert gguf.GGML_QUANT_SIZES[qtype] == (ggml_type.block_size, ggml_type.type_size)
    assert set(SUPPORTED) == {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"}


@pytest.mark.parametrize("type_name", SUPPORTED)
def test_dequantize_equals_gguf_quants_exactly(type_name):
    rng = np.random.default_rng(sum(map(ord, type_name)))
    block_size = next(t for t in GGML_TYPES.values() if t.name == type_name).block_size
    n_blocks = CHUNK_NUMBERS // block_size + 37
    ggml_type, raw = random_blocks(type_name, n_blocks, rng)
    n = n_blocks * block_size
    ours = dequantize(raw, ggml_type, (n,))
    qtype = gguf.GGMLQuantizationType[type_name]
    if type_name in ("F32", "F16"):
        rows = raw.view("<f4" if type_name == "F32" else "<f2")  # the reference takes these as numbers
    else:
        rows = raw.reshape(-1, ggml_type.type_size)
    reference = np.asarray(gguf.quants.dequantize(rows, qtype), np.float32).reshape(-1)
    assert ours.dtype == np.float32 and ours.shape == (n,)
    assert np.array_equal(ours.view(np.uint32), reference.view(np.uint32))


def test_dequantize_keeps_the_shape_and_f32_is_a_view():
    raw = np.arange(12, dtype="<f4").view(np.uint8)
    array = dequantize(raw, GGML_TYPES[0], (3, 4))
    assert array.shape == (3, 4) and np.shares_memory(array, raw)
    q8 = random_blocks("Q8_0", 6, np.random.default_rng(0))[1]
    assert dequantize(q8, GGML_TYPES[8], (2, 96)).shape == (2, 96)
