"""Bad .gguf files get a GGUFError (or TokenizerError) naming the file and the problem, never a
crash, a hang or a huge allocation. The files are built byte by byte here (`build`), so that each
test breaks exactly one field; the models come from tests/fixtures/gguf/.
"""

import dataclasses
import os
import struct

import numpy as np
import pytest

from mamba_wasm import CheckpointError, GGUFError, Tokenizer, TokenizerError, load_model, load_model_from_files
from mamba_wasm.gguf import read_gguf
from mamba_wasm.gguf_checkpoint import load_gguf_model
from mamba_wasm.gguf_quants import GGML_TYPES

GGUF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gguf")
SMALL = os.path.join(GGUF_DIR, "hf_tied_bias-Q8_0.gguf")
U32, I32, F32, STRING, ARRAY = 4, 5, 6, 8, 9


def u32(x):
    return struct.pack("<I", x)


def u64(x):
    return struct.pack("<Q", x)


def string(text):
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv(key, type_id, payload):
    return string(key) + u32(type_id) + payload


def info(name, dims, type_id=0, offset=0):
    return string(name) + u32(len(dims)) + b"".join(map(u64, dims)) + u32(type_id) + u64(offset)


def build(kvs=(), infos=(), data=b"", version=3, magic=b"GGUF", n_tensors=None, n_kv=None, alignment=32):
    head = magic + u32(version) + u64(len(infos) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    return body + b"\0" * (-len(body) % alignment) + data


def raises(data, message, error=GGUFError):
    with pytest.raises(error, match=message) as caught:
        read_gguf(data, "bad.gguf")
    assert "bad.gguf" in str(caught.value)


def test_a_valid_hand_built_file_reads():
    data = build([kv("general.architecture", STRING, string("mamba"))], [info("t", [4, 2])],
                 np.arange(8, dtype="<f4").tobytes())
    parsed = read_gguf(data, "ok.gguf")
    assert parsed.metadata == {"general.architecture": "mamba"}
    assert parsed.tensors["t"].shape == (2, 4) and parsed.tensors["t"].data.nbytes == 32


@pytest.mark.parametrize("data, message", [
    (b"", "the magic number at byte 0 needs 4 bytes"),
    (b"GGML" + bytes(20), "not a GGUF file"),
    (build(version=1), "version 1 is not supported"),
    (build(version=7), "version 7 is not supported"),
    (build(version=3 << 24), "big-endian"),
    (build()[:10], "the version|the tensor count"),
    (build(n_kv=2**62), "metadata count 4611686018427387904 cannot fit"),
    (build(n_tensors=2**40), "tensor count 1099511627776 cannot fit"),
    (build([kv("k", STRING, u64(2**60) + b"ab")]), "metadata 'k' at byte .* needs 1152921504606846976 bytes"),
    (build([kv("k", ARRAY, u32(U32) + u64(2**61))]), "length of the array 'k': 2305843009213693952 cannot fit"),
    (build([kv("k", ARRAY, u32(STRING) + u64(2**61))]), "string array 'k': 2305843009213693952 cannot fit"),
    (build([kv("k", ARRAY, u32(STRING) + u64(2) + string("a") + u64(99))]), "item 1 of 'k'"),
    (build([kv("k", ARRAY, u32(ARRAY) + u64(1))]), "array of arrays"),
    (build([kv("k", 13, b"")]), "unknown value type 13"),
    (build([kv("k", ARRAY, u32(99) + u64(0))]), "array of unknown value type 99"),
    (build([kv("k", U32, u32(1)), kv("k", U32, u32(2))]), "'k' appears twice"),
    (build([kv(b"\xff", U32, u32(1))]), "a metadata key is not valid UTF-8"),
    (build([kv("k", ARRAY, u32(STRING) + u64(1) + string(b"\xc3"))]), "item 0 of 'k' is not valid UTF-8"),
    (build([kv("general.alignment", U32, u32(24))]), "alignment must be a power of two, got 24"),
    (build([kv("general.alignment", STRING, string("32"))]), "alignment must be a power of two"),
    (build(infos=[info("t", [4, 1, 1, 1, 1])]), "5 dimensions"),
    (build(infos=[info("t", [4], type_id=4)]), "unknown GGML type 4"),
    (build(infos=[info("t", [33], type_id=8)]), "rows of 33 numbers are not a whole number of Q8_0 blocks"),
    (build(infos=[info("t", [4])], data=bytes(15)), r"bytes 0-16 of the data section run past its end \(15"),
    (build(infos=[info("t", [2**62, 2**62])], data=bytes(16)), "run past its end"),
    (build(infos=[info("t", [4], offset=2**63)], data=bytes(16)), "bytes 9223372036854775808-.* run past its end"),
    (build(infos=[info("t", [4], offset=8)], data=bytes(64)), "offset 8 is not a multiple of the alignment 32"),
    (build(infos=[info("t", [4]), info("t", [4], offset=32)], data=bytes(64)), "tensor 't' appears twice"),
    (build(infos=[info("a", [16]), info("b", [4], offset=32)], data=bytes(64)), "tensor 'b' .* overlaps tensor 'a'"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_bad_files_are_refused_with_a_clear_message(data, message):
    raises(data, message)


def test_every_truncation_of_a_real_file_is_refused():
    data = open(SMALL, "rb").read()
    last_tensor_end = len(data)  # the converter pads nothing after the last tensor
    for size in sorted({*range(0, 2000, 7), *range(2000, last_tensor_end, 997), last_tensor_end - 1}):
        with pytest.raises(GGUFError, match="bad.gguf"):
            load_gguf_model(read_gguf(data[:size], "bad.gguf"))


@pytest.fixture(scope="module")
def small():
    return read_gguf(open(SMALL, "rb").read(), "small.gguf")


def with_metadata(gguf_file, **changes):
    metadata = {**gguf_file.metadata}
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    return dataclasses.replace(gguf_file, metadata=metadata)


def with_tensor(gguf_file, name, tensor):
    tensors = {**gguf_file.tensors}
    if tensor is None:
        del tensors[name]
    else:
        tensors[name] = tensor
    return dataclasses.replace(gguf_file, tensors=tensors)


@pytest.mark.parametrize("changes, message", [
    (dict(general__architecture="llama"), "architecture 'llama' is not supported"),
    (dict(general__architecture="jamba"), "architecture 'jamba' is not supported \\(supported: 'mamba', 'mamba2'\\)"),
    (dict(general__architecture=7), "architecture 7 is not supported"),
    (dict(general__architecture=None), "architecture None is not supported"),
    (dict(mamba__ssm__dt_b_c_rms=True), "Falcon-Mamba"),
    (dict(mamba__ssm__state_size=None), "missing metadata 'mamba.ssm.state_size'"),
    (dict(mamba__ssm__state_size=0), "'mamba.ssm.state_size' must be a positive int, got 0"),
    (dict(mamba__ssm__state_size="16"), "must be a positive int"),
    (dict(mamba__block_count=10**9), "says 1000000000 layers, but the file holds only 26 tensors"),
    (dict(mamba__block_count=1), "unexpected tensors 'blk.1.attn_norm.weight'"),
    (dict(mamba__embedding_length=64), "'token_embd.weight' has shape \\(96, 32\\), expected \\(96, 64\\)"),
    (dict(split__count=3), "split into 3 files"),
])
def test_bad_model_metadata(small, changes, message):
    with pytest.raises(GGUFError, match=message) as caught:
        load_gguf_model(with_metadata(small, **changes))
    assert "small.gguf" in str(caught.value)


def test_missing_unsupported_and_non_finite_tensors(small):
    with pytest.raises(GGUFError, match="missing tensor 'blk.1.ssm_a'"):
        load_gguf_model(with_tensor(small, "blk.1.ssm_a", None))
    in_proj = small.tensors["blk.0.ssm_in.weight"]
    q4_1 = dataclasses.replace(in_proj, ggml_type=GGML_TYPES[3], data=np.zeros(128 * 20, np.uint8))
    with pytest.raises(GGUFError, match="'blk.0.ssm_in.weight' has type Q4_1; supported: F32, F16, BF16"):
        load_gguf_model(with_tensor(small, in_proj.name, q4_1))
    a = small.tensors["blk.0.ssm_a"]
    nan = dataclasses.replace(a, data=np.full(a.data.size // 4, np.nan, "<f4").view(np.uint8))
    with pytest.raises(GGUFError, match="'blk.0.ssm_a' holds non-finite values"):
        load_gguf_model(with_tensor(small, a.name, nan))


def test_bad_tokenizer_metadata(small):
    with pytest.raises(TokenizerError, match="tokenizer model 'llama' is not supported"):
        Tokenizer.from_gguf(with_metadata(small, tokenizer__ggml__model="llama"))
    with pytest.raises(TokenizerError, match="pre-tokenizer 'qwen2' is not supported"):
        Tokenizer.from_gguf(with_metadata(small, tokenizer__ggml__pre="qwen2"))
    with pytest.raises(TokenizerError, match="no tokenizer"):
        Tokenizer.from_gguf(with_metadata(small, tokenizer__ggml__model=None))
    with pytest.raises(TokenizerError, match="96 tokens but 2 token types"):
        Tokenizer.from_gguf(with_metadata(small, tokenizer__ggml__token_type=np.array([1, 1], np.int32)))
    with pytest.raises(TokenizerError, match="token 5 .* has type 6"):
        types = np.ones(96, np.int32)
        types[5] = 6
        Tokenizer.from_gguf(with_metadata(small, tokenizer__ggml__token_type=types))
    with pytest.raises(TokenizerError, match="merge 1 .* is not two tokens"):
        Tokenizer.from_gguf(with_metadata(small, tokenizer__ggml__merges=["ab"]))


def test_loaders_name_the_file(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + bytes(3))
    with pytest.raises(GGUFError, match="broken.gguf"):
        load_model(str(path))
    with pytest.raises(GGUFError, match="https://host/m/x.gguf"):
        load_model_from_files({"x.gguf": b"nope"}, "https://host/m")
    with pytest.raises(CheckpointError, match="several .gguf files"):
        load_model_from_files({"a.gguf": b"", "b.gguf": b""}, "m")
