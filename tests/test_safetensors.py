"""mamba_wasm.safetensors against the `safetensors` library (reading, and writing byte for byte),
and one test per kind of corruption.

The F32/F16 tests use safetensors.numpy only; the BF16 parity test uses torch when installed
(NumPy has no bfloat16) and a hand-built file otherwise.
"""

import json
import struct

import numpy as np
import pytest

from mamba_wasm.errors import SafetensorsError
from mamba_wasm.safetensors import (
    BFLOAT16,
    DTYPES,
    MAX_HEADER_BYTES,
    read_safetensors,
    safetensors_bytes,
    to_float32,
    write_safetensors,
)

import safetensors.numpy as safetensors_numpy  # installed by the test command

SOURCE = "dir/model.safetensors"


def build(header, data=b""):
    """A safetensors file from a header (dict, or raw bytes for corrupt ones) and data bytes."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def read_error(buffer):
    with pytest.raises(SafetensorsError) as info:
        read_safetensors(buffer, SOURCE)
    message = str(info.value)
    assert SOURCE in message
    return message


def sample_tensors(dtype):
    rng = np.random.default_rng(0)
    return {
        "embedding": rng.standard_normal((7, 5)).astype(dtype),
        "conv": rng.standard_normal((4, 1, 3)).astype(dtype),
        "bias": rng.standard_normal(9).astype(dtype),
        "scalar": np.array(2.5, dtype=dtype),
        "empty": np.zeros((0, 3), dtype=dtype),
    }


# -- parity with the safetensors library -----------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int64, np.int32, np.uint8, np.bool_])
def test_reads_what_the_library_writes(dtype):
    tensors = sample_tensors(dtype)
    buffer = safetensors_numpy.save(tensors, metadata={"format": "np"})
    ours = read_safetensors(buffer, SOURCE)
    theirs = safetensors_numpy.load(buffer)
    assert ours.keys() == theirs.keys() == tensors.keys()
    for name, array in theirs.items():
        assert ours[name].dtype == array.dtype and ours[name].shape == array.shape, name
        np.testing.assert_array_equal(ours[name], array)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_bytes_bytearray_memoryview(kind):
    buffer = safetensors_numpy.save(sample_tensors(np.float32))
    ours = read_safetensors(kind(buffer), SOURCE)
    np.testing.assert_array_equal(ours["embedding"], sample_tensors(np.float32)["embedding"])


def test_zero_copy():
    buffer = bytearray(safetensors_numpy.save(sample_tensors(np.float16)))
    ours = read_safetensors(buffer, SOURCE)
    assert np.shares_memory(ours["embedding"], np.frombuffer(buffer, np.uint8))
    assert to_float32(ours["bias"]).dtype == np.float32
    f32 = read_safetensors(safetensors_numpy.save(sample_tensors(np.float32)), SOURCE)["bias"]
    assert to_float32(f32) is f32  # float32 needs no conversion, so no copy


def test_unaligned_data_is_copied_into_aligned_arrays():
    values = np.arange(6, dtype="<f4")
    header = b'{"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}'  # 57 bytes: data at 65
    assert (8 + len(header)) % 4 != 0
    array = read_safetensors(build(header, values.tobytes()), SOURCE)["x"]
    assert array.flags.aligned
    np.testing.assert_array_equal(array, values.reshape(2, 3))


def test_bf16_by_hand():
    # bfloat16 is the top 16 bits of a float32: 1.0 = 0x3F80, -2.0 = 0xC000, 0.15625 = 0x3E20
    data = struct.pack("<4H", 0x3F80, 0xC000, 0x3E20, 0x7F80)
    buffer = build({"x": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, data)
    array = read_safetensors(buffer, SOURCE)["x"]
    assert array.dtype == BFLOAT16 and array.shape == (2, 2)
    np.testing.assert_array_equal(to_float32(array), np.array([[1.0, -2.0], [0.15625, np.inf]], np.float32))


def test_bf16_parity_with_torch():
    import torch
    import safetensors.torch as safetensors_torch
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "w": torch.randn(6, 5, generator=generator).to(torch.bfloat16),
        "b": (torch.randn(11, generator=generator) * 1e4).to(torch.bfloat16),
        "f16": torch.randn(3, generator=generator).to(torch.float16),
    }
    ours = read_safetensors(safetensors_torch.save(tensors), SOURCE)
    for name, tensor in tensors.items():
        np.testing.assert_array_equal(to_float32(ours[name]), tensor.float().numpy(), err_msg=name)


def test_metadata_is_optional_and_skipped():
    data = np.ones(2, "<f4").tobytes()
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    assert read_safetensors(build({"x": entry}, data), SOURCE).keys() == {"x"}
    assert read_safetensors(build({"__metadata__": {"a": "b"}, "x": entry}, data), SOURCE).keys() == {"x"}


def test_header_padded_with_spaces():
    header = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode() + b"   "
    assert read_safetensors(build(header, b"\0\0\x80?"), SOURCE)["x"][0] == 1.0


# -- corrupt files ---------------------------------------------------------------------------------

ENTRY = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
DATA = bytes(24)


def with_entry(**changes):
    return build({"weight": {**ENTRY, **changes}}, DATA)


def test_too_short_for_header_length():
    assert "too short" in read_error(b"\x01\x02\x03")


def test_truncated_data():
    buffer = safetensors_numpy.save(sample_tensors(np.float32))
    message = read_error(buffer[:-10])
    assert "outside" in message and "truncated" in message
    assert any(f"'{name}'" in message for name in sample_tensors(np.float32))


def test_header_length_beyond_file():
    assert "runs past the end" in read_error(struct.pack("<Q", 1000) + b"{}")


def test_huge_header_refused_before_reading():
    message = read_error(struct.pack("<Q", MAX_HEADER_BYTES + 1))
    assert "limit" in message


def test_invalid_json():
    assert "not valid UTF-8 JSON" in read_error(build(b'{"weight": {'))


def test_invalid_utf8():
    assert "not valid UTF-8 JSON" in read_error(build(b'{"\xff": 1}'))


def test_non_object_json():
    assert "must be a JSON object" in read_error(build(b"[1, 2]"))


def test_entry_not_an_object():
    assert "'weight'" in read_error(build({"weight": [1, 2]}))


def test_missing_field():
    entry = dict(ENTRY)
    del entry["data_offsets"]
    message = read_error(build({"weight": entry}, DATA))
    assert "'weight'" in message and "data_offsets" in message


def test_unknown_dtype():
    message = read_error(with_entry(dtype="F7"))
    assert "'weight'" in message and "F7" in message and "F32" in message


@pytest.mark.parametrize("shape", [[-2, 3], [2.0, 3], "6", [True, 3], None])
def test_bad_shape(shape):
    message = read_error(with_entry(shape=shape))
    assert "'weight'" in message and "shape" in message


@pytest.mark.parametrize("offsets", [[0, 48], [24, 0], [0], [-24, 0], "0-24"])
def test_bad_or_out_of_range_offsets(offsets):
    message = read_error(with_entry(data_offsets=offsets))
    assert "'weight'" in message and "data_offsets" in message


def test_overlapping_offsets():
    header = {
        "first": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "second": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    message = read_error(build(header, DATA))
    assert "overlaps" in message and "'first'" in message and "'second'" in message


def test_size_mismatch():
    message = read_error(with_entry(shape=[2, 2]))
    assert "'weight'" in message and "24 bytes" in message and "16" in message


def test_bad_metadata():
    assert "__metadata__" in read_error(build({"__metadata__": {"n": 1}}))


# -- writing: the same bytes as the library ---------------------------------------------------------

def mixed_tensors(rng):
    """One tensor per NumPy dtype the format names (odd byte counts before wider types), plus
    empty and 0-d ones."""
    tensors = {}
    for i, (name, dtype) in enumerate(DTYPES.items()):
        if dtype != BFLOAT16:
            tensors[f"t{i:02d}_{name}"] = (rng.standard_normal((i % 3) + 1) * 50).astype(dtype)
    tensors["empty"] = np.zeros((0, 4), np.float32)
    tensors["scalar"] = np.array(2.5, np.float32)
    tensors["a_matrix"] = rng.standard_normal((3, 5)).astype(np.float32)
    return tensors


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}, {"b": "2", "a": "1"}])
def test_writer_writes_the_librarys_bytes(metadata):
    tensors = mixed_tensors(np.random.default_rng(0))
    ours = safetensors_bytes(tensors, metadata)
    assert ours == safetensors_numpy.save(tensors, metadata=metadata)
    back = read_safetensors(ours)
    assert back.keys() == tensors.keys()
    for name, array in tensors.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array)
        assert back[name].flags.aligned


def test_writer_writes_bf16_as_the_library_does_with_torch():
    import torch
    import safetensors.torch as safetensors_torch

    rng = np.random.default_rng(1)
    values = {"h": rng.standard_normal(3).astype(np.float16), "w": rng.standard_normal((2, 3)).astype(np.float32),
              "b": rng.standard_normal(5).astype(np.float32), "a": rng.standard_normal(1).astype(np.float32)}
    torch_tensors = {"h": torch.from_numpy(values["h"]), "w": torch.from_numpy(values["w"]),
                     "b": torch.from_numpy(values["b"]).to(torch.bfloat16), "a": torch.from_numpy(values["a"]).to(torch.bfloat16)}
    ours_tensors = {k: v for k, v in values.items() if k in "hw"}
    for k in "ba":
        ours_tensors[k] = torch_tensors[k].view(torch.int16).numpy().view(BFLOAT16)
    ours = safetensors_bytes(ours_tensors, {"format": "pt"})
    assert ours == safetensors_torch.save(torch_tensors, metadata={"format": "pt"})
    assert safetensors_torch.load(ours)["b"].dtype == torch.bfloat16


def test_writer_writes_to_a_file_and_refuses_an_unnamed_dtype(tmp_path):
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as file:
        write_safetensors(file, {"x": np.arange(4, dtype=np.float32)})
    assert np.array_equal(safetensors_numpy.load_file(str(path))["x"], np.arange(4, dtype=np.float32))
    with pytest.raises(SafetensorsError, match="tensor 'c': dtype complex64 has no safetensors name"):
        safetensors_bytes({"c": np.zeros(2, np.complex64)})
