"""GGUF files made by llama.cpp's converter (tests/make_gguf_fixtures.py) against the safetensors
checkpoints they came from, HF transformers' logits, and the `gguf` package's reader.

Tolerances, as max |logits - HF| / max(1, max |HF|) over each fixture's 12-token prompt: measured on
these fixtures (below), about 2x given as QUANTIZED_TOLERANCE. What a type costs depends on the model:
these are tiny random models, so the 4-bit figures only show that the numbers decode right.
    F32     3.4e-7, 1.7e-7, Mamba-2 4.0e-7 (test_parity.py's 1e-4 bound holds); 1e-6 from our safetensors model
            (the converter computes A = -exp(A_log) in torch, we in NumPy: <= 1 ulp apart)
    F16     3.7e-4 from an f32 checkpoint (original_layout); 1.9e-6 from an f16 one (f16_sharded:
            the weights are the checkpoint's, A = -exp(A_log) is rounded to f16 by the converter)
    BF16    1.2e-7 from a bf16 checkpoint (the weights are the checkpoint's)
    Q8_0    8.5e-3, Mamba-2 1.6e-2;  Q4_0  0.18 (greedy ids 11/12 the same);  Q4_K_M  0.22 (our min/max K-quantizer
            in make_gguf_fixtures.py, not llama-quantize's search; 12/12 greedy ids the same)
"""

import json
import os
import re
import subprocess
import sys

import gguf
import numpy as np
import pytest

import mamba_wasm
from mamba_wasm import Tokenizer, load_model, load_model_from_files
from mamba_wasm.gguf import read_gguf
from mamba_wasm.errors import GGUFTruncatedError
from mamba_wasm.plan import describe_gguf, describe_gguf_prefix

HERE = os.path.dirname(os.path.abspath(__file__))
GGUF_DIR = os.path.join(HERE, "fixtures", "gguf")
MODELS = os.path.join(HERE, "fixtures", "models")
MODEL_FILES = sorted(name for name in os.listdir(GGUF_DIR) if re.fullmatch(r"\w+-\w+\.gguf", name))
CASE_FILES = [name for name in MODEL_FILES if not name.startswith("kquant")]
# type -> the largest relative logits error accepted (measured: the module docstring)
QUANTIZED_TOLERANCE = {"F32": 1e-6, "F16": 1e-3, "BF16": 1e-6, "Q8_0": 3e-2, "Q4_0": 0.35, "Q4_K_M": 0.45}
# tensor name in the file -> how to find the same numbers in our MambaWeights
WEIGHT_OF = {
    "token_embd.weight": lambda w: w.embedding,
    "output_norm.weight": lambda w: w.norm_f,
    "output.weight": lambda w: w.lm_head,
}
LAYER_FIELDS = {
    "attn_norm.weight": "norm", "ssm_in.weight": "in_proj", "ssm_in.bias": "in_proj_bias",
    "ssm_conv1d.weight": "conv", "ssm_conv1d.bias": "conv_bias", "ssm_x.weight": "x_proj",
    "ssm_dt.weight": "dt_proj", "ssm_dt.bias": "dt_proj_bias", "ssm_a": "A", "ssm_d": "D",
    "ssm_out.weight": "out_proj", "ssm_out.bias": "out_proj_bias",
}
MAMBA2_LAYER_FIELDS = {**LAYER_FIELDS, "ssm_dt.bias": "dt_bias", "ssm_norm.weight": "gated_norm"}
# config fields a .gguf file does not store (their defaults differ from the fixtures' on purpose)
NOT_STORED = ("layout", "norm_eps", "gated_norm_eps", "chunk_size")


def relative_error(ours, reference):
    return float(np.abs(ours - reference).max() / max(1.0, np.abs(reference).max()))


def path_of(name):
    return os.path.join(GGUF_DIR, name)


def expected_of(name):
    case = name.split("-")[0]
    if case == "kquant":
        return np.load(path_of("kquant-expected.npz"))
    return np.load(os.path.join(MODELS, case, "expected.npz"))


def weight(model, name):
    if name in WEIGHT_OF:
        return WEIGHT_OF[name](model.weights)
    layer, key = re.fullmatch(r"blk\.(\d+)\.(.+)", name).groups()
    fields = LAYER_FIELDS if model.config.architecture == "Mamba-1" else MAMBA2_LAYER_FIELDS
    return getattr(model.weights.layers[int(layer)], fields[key])


def test_fixtures_cover_every_type():
    types = {name[:-5].split("-")[1] for name in MODEL_FILES}
    assert types == {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M"}
    kinds = {t.tensor_type.name for name in MODEL_FILES for t in gguf.GGUFReader(path_of(name)).tensors}
    assert {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"} <= kinds
    architectures = {gguf.GGUFReader(path_of(name)).fields["general.architecture"].contents() for name in MODEL_FILES}
    assert architectures == {"mamba", "mamba2"}


@pytest.mark.parametrize("name", MODEL_FILES + ["tokenizer.gguf"])
def test_reader_matches_the_gguf_package(name):
    ours = read_gguf(open(path_of(name), "rb").read(), name)
    reference = gguf.GGUFReader(path_of(name))
    fields = {key: field for key, field in reference.fields.items() if not key.startswith("GGUF.")}
    assert list(ours.metadata) == list(fields)
    for key, field in fields.items():
        value = ours.metadata[key]
        expected = field.contents()
        if isinstance(value, np.ndarray):
            assert value.tolist() == expected, key
        elif isinstance(value, float):
            assert value == pytest.approx(expected, rel=1e-7), key
        else:
            assert value == expected, key
    assert list(ours.tensors) == [t.name for t in reference.tensors]
    for tensor in reference.tensors:
        mine = ours.tensors[tensor.name]
        assert mine.ggml_type.name == tensor.tensor_type.name
        assert mine.shape == tuple(int(d) for d in reversed(tensor.shape))
        assert bytes(mine.data) == tensor.data.tobytes()


@pytest.mark.parametrize("name", MODEL_FILES)
def test_weights_are_the_gguf_package_dequantization(name):
    model = load_model(path_of(name))
    for tensor in gguf.GGUFReader(path_of(name)).tensors:
        reference = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        ours = weight(model, tensor.name)
        assert ours.dtype == np.float32
        assert np.array_equal(ours, reference.reshape(ours.shape)), tensor.name


@pytest.mark.parametrize("name", MODEL_FILES)
def test_logits_match_transformers_within_the_type_tolerance(name):
    model, expected = load_model(path_of(name)), expected_of(name)
    type_name = name[:-5].split("-")[1]
    logits = model.forward(expected["prompt_ids"].tolist())
    assert relative_error(logits, expected["logits"]) <= QUANTIZED_TOLERANCE[type_name]
    state = model.new_state()
    steps = np.stack([model.step(int(t), state) for t in expected["prompt_ids"]])
    assert relative_error(steps, logits) <= 1e-5


@pytest.mark.parametrize("name", [n for n in CASE_FILES if n.endswith("-F32.gguf")])
def test_f32_file_is_the_safetensors_model(name):
    case = name.split("-")[0]
    ours, safetensors = load_model(path_of(name)), load_model(os.path.join(MODELS, case))
    expected = expected_of(name)
    assert type(ours) is type(safetensors) and type(ours.config) is type(safetensors.config)
    config = {k: v for k, v in ours.config.to_dict().items() if k not in NOT_STORED}
    assert config == {k: v for k, v in safetensors.config.to_dict().items() if k not in NOT_STORED}
    assert ours.config.norm_eps == pytest.approx(safetensors.config.norm_eps, rel=1e-7)  # stored as float32
    ids = expected["prompt_ids"].tolist()
    assert relative_error(ours.forward(ids), safetensors.forward(ids)) <= 1e-6
    state, token, generated = ours.new_state(), ids[-1], []
    for t in ids[:-1]:
        ours.step(t, state)
    for _ in range(len(expected["greedy_ids"])):
        token = int(np.argmax(ours.step(token, state)))
        generated.append(token)
    assert generated == expected["greedy_ids"].tolist()


def test_load_model_from_files_takes_the_gguf_bytes():
    name = "hf_tied_bias-Q8_0.gguf"
    data = open(path_of(name), "rb").read()
    model = load_model_from_files({name: memoryview(data)}, "https://example.org/m")
    assert model.config.layout == "gguf" and model.config.tie_embeddings
    assert model.weights.lm_head is model.weights.embedding
    ids = expected_of(name)["prompt_ids"].tolist()
    assert np.array_equal(model.forward(ids), load_model(path_of(name)).forward(ids))


def test_untied_file_keeps_its_lm_head():
    model = load_model(path_of("hf_untied_k3-F32.gguf"))
    assert not model.config.tie_embeddings and model.weights.lm_head is not model.weights.embedding
    assert not model.config.conv_bias and model.config.proj_bias and model.config.d_conv == 3


def test_tokenizer_ids_equal_the_tokenizer_json():
    expected = json.load(open(os.path.join(HERE, "fixtures", "tokenizer", "expected.json"), encoding="utf-8"))
    from_gguf = Tokenizer.from_gguf(open(path_of("tokenizer.gguf"), "rb").read(), "tokenizer.gguf")
    from_json = Tokenizer.from_file(os.path.join(HERE, "fixtures", "tokenizer", "tokenizer.json"))
    assert from_gguf.vocab_size == from_json.vocab_size  # the converter's [PAD] ids are left out
    assert [from_gguf.encode(text) for text in expected["texts"]] == expected["encode"]["tokenizer.json"]
    for case in expected["decode"]["tokenizer.json"]:
        assert from_gguf.decode(case["ids"]) == case["text"]
    assert from_gguf.eos_token_id == from_json.eos_token_id == 0


def test_tokenizer_of_a_model_file_skips_merges_it_cannot_apply():
    data = read_gguf(open(path_of("hf_tied_bias-F32.gguf"), "rb").read(), "m.gguf")
    tokenizer = Tokenizer.from_gguf(data)
    assert tokenizer.vocab_size == 96 and tokenizer.id_to_token(0) == "<|endoftext|>"
    assert tokenizer.encode("<|endoftext|>!") == [0, tokenizer.token_to_id("!")]


def test_package_exports():
    assert mamba_wasm.GGUFError.__mro__[1] is mamba_wasm.CheckpointError


def test_command_line_generates_from_a_gguf_file():
    path = path_of("hf_tied_bias-Q8_0.gguf")
    done = subprocess.run([sys.executable, "-m", "mamba_wasm", "generate", path, "--prompt", "!#", "--max-new-tokens",
                           "8", "--temperature", "0", "--no-echo"], cwd=os.path.dirname(HERE), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    model, tokenizer = mamba_wasm.from_pretrained(path)
    expected = "".join(mamba_wasm.generate(model, tokenizer, "!#", 8, temperature=0))
    assert done.stdout == expected + "\n"


@pytest.mark.parametrize("name", ["hf_tied_bias-Q8_0.gguf", "mamba2_hf_untied-Q8_0.gguf", "kquant-Q4_K_M.gguf"])
def test_the_page_can_describe_a_file_from_its_first_bytes(name):
    data = open(path_of(name), "rb").read()
    header_bytes = read_gguf(data, name).data_start
    described = describe_gguf(data[:header_bytes], name)
    model = load_model(path_of(name))
    assert described["header_bytes"] == header_bytes < len(data)
    assert described["n_params"] == model.n_params == model.config.n_params()
    assert described["architecture"] == model.config.architecture
    assert sum(described["tensor_types"].values()) == len(gguf.GGUFReader(path_of(name)).tensors)
    assert described["unsupported_types"] == []
    with pytest.raises(mamba_wasm.GGUFError, match=f"{name}: .* the file ends at byte {header_bytes - 100}"):
        describe_gguf(data[: header_bytes - 100], name)


@pytest.mark.parametrize("name, label", [("hf_tied_bias-Q8_0.gguf", "Q8_0"), ("kquant-Q4_K_M.gguf", "Q4_K/Q6_K mix"),
                                         ("original_layout-F16.gguf", "F16"), ("bf16-BF16.gguf", "BF16"),
                                         ("hf_tied_bias-F32.gguf", "F32")])
def test_the_page_reads_a_growing_prefix_until_the_header_is_whole(name, label):
    """describe_gguf_prefix: None (read more) for a prefix of a longer file, the description once
    the tensor table is in; a whole file that ends too soon is a truncated file."""
    data = open(path_of(name), "rb").read()
    header_bytes = read_gguf(data, name).data_start
    for cut in (0, 3, 24, header_bytes // 2, header_bytes - 40):  # (the header ends in up to 31 bytes of padding)
        assert describe_gguf_prefix(data[:cut], len(data), name) is None, cut
    described = describe_gguf_prefix(data[:header_bytes], len(data), name)
    assert described == describe_gguf(data, name) and described["quantization"] == label
    with pytest.raises(GGUFTruncatedError, match=f"{name}: .*(truncated|file ends)"):
        describe_gguf_prefix(data[: header_bytes // 2], header_bytes // 2, name)
    with pytest.raises(mamba_wasm.GGUFError, match="not a GGUF file"):
        describe_gguf_prefix(b"GGML" + data[4:100], len(data), name)  # corrupt, however short
