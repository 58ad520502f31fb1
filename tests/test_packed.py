"""Q8_0 matrices kept as a .gguf file holds them (mamba_wasm/packed.py), natively: they must be
the very numbers the float32 load gives (exact dequantization), and a model loaded packed must
compute what the float32 one computes. In the browser the SIMD kernels multiply by them
(tests/test_kernels_pyodide.py runs the real kernels); here NumPy does, on the dequantized matrix.
Every other type, F16 included, is loaded as float32 even when packing is asked for."""

import os

import numpy as np
import pytest

from mamba_wasm.errors import GGUFError
from mamba_wasm.gguf import read_gguf
from mamba_wasm.gguf_checkpoint import load_gguf_model, weight_bytes
from mamba_wasm.gguf_quants import GGML_TYPES, dequantize
from mamba_wasm.model import _project
from mamba_wasm.packed import Q8Matrix

HERE = os.path.dirname(os.path.abspath(__file__))
GGUF_DIR = os.path.join(HERE, "fixtures", "gguf")
rng = np.random.default_rng(0)


def q8_bytes(out, n_in):
    blocks = np.empty((out * n_in // 32, 34), np.uint8)
    blocks[:, :2] = rng.uniform(-0.05, 0.05, (out * n_in // 32, 1)).astype("<f2").view(np.uint8)
    blocks[:, 2:] = rng.integers(-128, 128, (out * n_in // 32, 32), dtype=np.int8).view(np.uint8)
    return blocks.reshape(-1)


def test_q8_matrix_is_the_dequantized_tensor_exactly():
    raw = q8_bytes(5, 96)
    matrix = Q8Matrix.from_bytes(raw, (5, 96))
    dense = dequantize(raw, GGML_TYPES[8], (5, 96))
    assert matrix.shape == (5, 96) and matrix.size == 480 and matrix.nbytes == raw.nbytes == 5 * 3 * 34
    assert np.array_equal(matrix.dequantize(), dense)
    assert np.array_equal(matrix[3], dense[3])  # one row (the embedding lookup of one token)
    assert np.array_equal(matrix[np.array([4, 0, 4])], dense[[4, 0, 4]])  # rows of a prompt


def test_projection_by_a_packed_matrix_is_the_float32_one():
    matrix = Q8Matrix.from_bytes(q8_bytes(33, 64), (33, 64))
    dense = matrix.dequantize()
    for x in (rng.standard_normal(64).astype(np.float32), rng.standard_normal((5, 64)).astype(np.float32)):
        assert np.array_equal(_project(x, matrix), _project(x, dense))


def test_non_finite_scales_are_refused_when_packed():
    data = bytearray(open(os.path.join(GGUF_DIR, "hf_tied_bias-Q8_0.gguf"), "rb").read())
    tensor = read_gguf(bytes(data), "x.gguf").tensors["blk.0.ssm_in.weight"]
    assert tensor.ggml_type.name == "Q8_0"
    start = bytes(data).find(tensor.data.tobytes())
    data[start : start + 2] = np.array([np.inf], "<f2").tobytes()  # the first block's scale
    with pytest.raises(GGUFError, match="ssm_in.weight.*non-finite"):
        load_gguf_model(read_gguf(bytes(data), "x.gguf"), packed=True)


@pytest.mark.parametrize("name", ["hf_tied_bias-Q8_0.gguf", "mamba2_hf_untied-Q8_0.gguf", "original_layout-F16.gguf",
                                  "f16_sharded-F16.gguf", "hf_tied_bias-Q4_0.gguf"])
def test_a_model_loaded_packed_computes_what_the_float32_load_does(name):
    data = open(os.path.join(GGUF_DIR, name), "rb").read()
    dense = load_gguf_model(read_gguf(data, name))
    packed = load_gguf_model(read_gguf(data, name), packed=True)
    kinds = {type(packed.weights.layers[0].in_proj), type(packed.weights.lm_head)}
    if "Q8_0" in name:
        assert Q8Matrix in kinds, kinds
        assert packed.weights.n_params == dense.weights.n_params
    else:  # F16 widened at load for the float32 kernel; no kernel takes Q4_0: both float32
        assert kinds == {np.ndarray}, kinds
        assert all(m.dtype == np.float32 for m in (packed.weights.layers[0].in_proj, packed.weights.lm_head))
    ids = [1, 5, 2, 7, 3]
    assert np.array_equal(packed.forward(ids), dense.forward(ids))
    state_a, state_b = packed.new_state(), dense.new_state()
    for token in ids:
        assert np.array_equal(packed.step(token, state_a), dense.step(token, state_b))


@pytest.mark.parametrize("name", ["hf_tied_bias-Q8_0.gguf", "mamba2_hf_untied-Q8_0.gguf", "original_layout-F16.gguf",
                                  "bf16-BF16.gguf", "hf_tied_bias-F32.gguf", "kquant-Q4_K_M.gguf"])
@pytest.mark.parametrize("packed", [False, True])
def test_weight_bytes_is_what_the_loaded_model_keeps(name, packed):
    """The plan's memory figure (plan.describe_gguf, from the tensor table alone) is what the loaded
    weights hold: the file's tensor bytes when an array is a view of them (the file stays alive),
    plus the arrays of their own. An F16 file's model holds float32 only, even when packed: the
    file is not kept by a view (its F32 norms, conv, A and D are copied)."""
    data = np.frombuffer(open(os.path.join(GGUF_DIR, name), "rb").read(), np.uint8)
    gguf = read_gguf(data, name)
    weights = load_gguf_model(gguf, packed=packed).weights
    arrays = {id(a): a for a in [weights.embedding, weights.norm_f, weights.lm_head]
              + [v for layer in weights.layers for v in vars(layer).values() if v is not None]}
    arrays = [a.blocks if isinstance(a, Q8Matrix) else a for a in arrays.values()]
    views = [a for a in arrays if np.shares_memory(a, data)]
    tensor_bytes = sum(t.data.nbytes for t in gguf.tensors.values())
    own = sum(a.nbytes for a in arrays if not np.shares_memory(a, data))
    assert weight_bytes(gguf, packed) == (tensor_bytes if views else 0) + own
    if name.endswith("F32.gguf"):
        assert weight_bytes(gguf, packed) == tensor_bytes == 4 * weights.n_params  # views only
    elif packed and "Q8_0" in name:
        assert views and weight_bytes(gguf, packed) < 4 * weights.n_params
    else:  # F16, BF16, K-quants, or Q8_0 unpacked: float32 arrays of their own, the file freed
        assert not views and weight_bytes(gguf, packed) == 4 * weights.n_params
