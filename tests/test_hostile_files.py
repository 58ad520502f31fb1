"""Files from a broken or hostile server (issue 15), at the package level: each is refused cheaply
with a message naming the file and the limit, honest files still load, and nothing of a failed load
stays alive. docs/RELIABILITY.md ("Hostile server") maps each case to its test.
"""

import gc
import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import safetensors.numpy as safetensors_numpy  # installed by the test command

from mamba_wasm import CheckpointError, SafetensorsError, Tokenizer, TokenizerError, load_model, load_model_from_files
from mamba_wasm.checkpoint import HEADER_SLACK_BYTES, MAX_SHARDS, max_weight_bytes
from mamba_wasm.config import config_from_json
from mamba_wasm.safetensors import MAX_HEADER_ITEMS, read_safetensors
from mamba_wasm.tokenizer import ENCODE_SLICE, GPT2_SPLIT, MAX_TOKENIZER_BYTES, _split_words

TINY_RANDOM = Path(__file__).resolve().parent.parent / "models" / "tiny-random"
MB = 1 << 20
D, VOCAB, D_STATE, K, R = 64, 2000, 16, 4, 4  # d_in = 2 * D
CONFIG = dict(hidden_size=D, num_hidden_layers=2, vocab_size=VOCAB, state_size=D_STATE, expand=2, conv_kernel=K,
              time_step_rank=R, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)


def checkpoint_tensors(dtype=np.float32):
    """The tensors CONFIG implies, as transformers' MambaForCausalLM names and shapes them."""
    d_in = 2 * D
    shapes = {"backbone.embeddings.weight": (VOCAB, D), "backbone.norm_f.weight": (D,)}
    for i in range(CONFIG["num_hidden_layers"]):
        p = f"backbone.layers.{i}."
        shapes.update({
            p + "norm.weight": (D,), p + "mixer.in_proj.weight": (2 * d_in, D), p + "mixer.conv1d.weight": (d_in, 1, K),
            p + "mixer.conv1d.bias": (d_in,), p + "mixer.x_proj.weight": (R + 2 * D_STATE, d_in),
            p + "mixer.dt_proj.weight": (d_in, R), p + "mixer.dt_proj.bias": (d_in,),
            p + "mixer.A_log": (d_in, D_STATE), p + "mixer.D": (d_in,), p + "mixer.out_proj.weight": (D, d_in),
        })
    rng = np.random.default_rng(0)
    return {name: (rng.standard_normal(shape) * 0.1).astype(dtype) for name, shape in shapes.items()}


def checkpoint_files(tensors=None):
    tensors = checkpoint_tensors() if tensors is None else tensors
    return {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": safetensors_numpy.save(tensors)}


def header_file(header, data=b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def peak_allocation(function):
    """(the exception function raised, peak bytes Python allocated meanwhile)."""
    tracemalloc.start()
    try:
        function()
    except Exception as exc:  # noqa: BLE001 - returned for the caller to check
        error = exc
    else:
        error = None
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak


# -- safetensors: the header's cost is bounded before it becomes Python objects -------------------


def test_header_of_millions_of_empty_lists_is_refused_without_building_them():
    """The issue's `{"x":[[],[],...]}` at 10 MB (3.3 million lists; at 100 MB it took 15 s and 2.6 GB)."""
    buffer = header_file(b'{"x":[' + b"[]," * 3_500_000 + b"[]]}")
    error, peak = peak_allocation(lambda: read_safetensors(buffer, "big.safetensors"))
    assert isinstance(error, SafetensorsError), error
    assert f"more than {MAX_HEADER_ITEMS:,} JSON values" in str(error) and "big.safetensors" in str(error)
    assert peak < 4 * MB, peak  # parsing it would be ~300 MB


def test_header_nested_deeper_than_a_tensor_table_is_refused():
    raw = json.dumps({"x": {"dtype": "F32", "shape": [[1]], "data_offsets": [0, 4]}}).encode()
    fourth_level = raw.index(b"[[") + 1
    with pytest.raises(SafetensorsError, match=rf"nests deeper than a tensor table \(3 levels.* at byte {fourth_level}:"):
        read_safetensors(header_file(raw, bytes(4)))


def test_many_tensors_under_the_limit_still_read():
    """20,000 tensors (mamba-130m has 268) stay well inside the header's value budget."""
    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(20_000)}
    tensors = read_safetensors(header_file(header, bytes(80_000)))
    assert len(tensors) == 20_000


# -- safetensors: the tensors tile the data section exactly ---------------------------------------


def test_bytes_after_the_last_tensor_are_refused():
    buffer = safetensors_numpy.save({"a": np.ones(4, np.float32)}) + bytes(100)
    with pytest.raises(SafetensorsError, match=r"m.safetensors: 100 bytes after the last tensor.*nothing after them"):
        read_safetensors(buffer, "m.safetensors")


@pytest.mark.parametrize("offsets, where", [([[0, 8], [16, 24]], "data bytes 8-16 after tensor 'a'"),
                                            ([[8, 16], [16, 24]], "data bytes 0-8 at the start of the data section")])
def test_gaps_between_tensors_are_refused(offsets, where):
    header = {name: {"dtype": "F32", "shape": [2], "data_offsets": span} for name, span in zip("ab", offsets)}
    with pytest.raises(SafetensorsError, match=f"{where} belong to no tensor"):
        read_safetensors(header_file(header, bytes(24)))


def test_what_the_library_writes_tiles_exactly():
    tensors = {"a": np.ones((3, 2), np.float16), "empty": np.zeros((0, 4), np.float32), "b": np.arange(5.0)}
    assert read_safetensors(safetensors_numpy.save(tensors)).keys() == tensors.keys()


# -- a failed load keeps nothing alive, even while its error is kept --------------------------------


def kept_error_growth(function):
    """Call function (which must raise) and keep its error, as Pyodide keeps sys.last_exc; return
    (error, objects tracked by the GC, bytes still allocated), both relative to before the call."""
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    try:
        function()
    except Exception as exc:  # noqa: BLE001 - kept on purpose
        error = exc
    gc.collect()
    allocated = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return error, len(gc.get_objects()) - objects, allocated


def test_failed_header_parse_keeps_nothing_alive():
    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(20_000)}
    header["last"] = {"dtype": "F7", "shape": [0], "data_offsets": [0, 0]}  # 60,000 objects parsed before it
    buffer = header_file(header)
    error, objects, allocated = kept_error_growth(lambda: read_safetensors(buffer, "m.safetensors"))
    assert isinstance(error, SafetensorsError) and "'last'" in str(error)
    assert error.__context__ is None
    assert objects < 50, objects
    assert allocated < 64 * 1024, allocated


def test_failed_checkpoint_load_keeps_nothing_alive():
    """Every layer is upcast from float16 (1.4 MB of float32 copies) before norm_f's NaN is found."""
    tensors = checkpoint_tensors(np.float16)
    tensors["backbone.norm_f.weight"][3] = np.nan
    files = checkpoint_files(tensors)
    error, objects, allocated = kept_error_growth(lambda: load_model_from_files(files, "m"))
    assert isinstance(error, CheckpointError) and "non-finite" in str(error)
    assert objects < 50, objects
    assert allocated < 64 * 1024, allocated


def test_failed_tokenizer_load_keeps_nothing_alive():
    spec = json.loads((TINY_RANDOM / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["merges"].append(["zz", "qq"])  # checked after the vocabulary is read
    text = json.dumps(spec)
    error, objects, allocated = kept_error_growth(lambda: Tokenizer.from_json(text))
    assert isinstance(error, TokenizerError) and "'zz'" in str(error)
    assert objects < 50, objects
    assert allocated < 64 * 1024, allocated


# -- checkpoint: config.json bounds the weight files; the index bounds the shards ------------------


def test_weights_larger_than_the_config_implies_are_refused_before_reading(tmp_path):
    """A valid model followed by 256 MB (a sparse file: costs no disk): refused from its size."""
    files = checkpoint_files()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with open(tmp_path / "model.safetensors", "r+b") as file:
        file.truncate(len(files["model.safetensors"]) + 256 * MB)
    error, peak = peak_allocation(lambda: load_model(str(tmp_path)))
    assert isinstance(error, CheckpointError), error
    limit = max_weight_bytes(config_from_json(files["config.json"]))
    assert f"model.safetensors is {len(files['model.safetensors']) + 256 * MB:,} bytes" in str(error)
    assert f"config.json implies at most {limit:,}" in str(error)
    assert peak < 1 * MB, peak


def test_weights_larger_than_the_config_implies_are_refused_in_memory_too():
    files = checkpoint_files()
    honest = load_model_from_files(files, "m")  # the limit leaves room for the honest file
    assert honest.n_params > 0
    files["model.safetensors"] += bytes(HEADER_SLACK_BYTES + 4 * VOCAB * D)  # past room for an untied lm_head
    with pytest.raises(CheckpointError, match="m/model.safetensors is .* bytes, but config.json implies at most"):
        load_model_from_files(files, "m")


def test_an_index_with_too_many_shards_is_refused():
    weight_map = {f"t{i}": f"model-{i:05d}-of-50000.safetensors" for i in range(50_000)}
    files = {"config.json": json.dumps(CONFIG).encode(),
             "model.safetensors.index.json": json.dumps({"weight_map": weight_map}).encode()}
    with pytest.raises(CheckpointError, match=f"names 50,000 shard files; the limit is {MAX_SHARDS}"):
        load_model_from_files(files, "m")


@pytest.mark.parametrize("shard", ["%2e%2e", "%2E%2E", "..%2fconfig.json", "..", "a/b", "a\\b", "a\0b", "a%00b",
                                   "https:evil.example", "a?b", "a#b", "a b", "", "é.safetensors"])
def test_shard_names_must_be_plain_file_names(shard, tmp_path):
    files = {"config.json": json.dumps(CONFIG).encode(),
             "model.safetensors.index.json": json.dumps({"weight_map": {"t": shard}}).encode()}
    with pytest.raises(CheckpointError, match="must be a plain file name in the checkpoint folder"):
        load_model_from_files(files, "m")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(CheckpointError, match="must be a plain file name"):  # before any file is opened
        load_model(str(tmp_path))


# -- tokenizer.json: a size limit, and encoding in slices a caller can interleave -------------------


def test_tokenizer_json_over_the_limit_says_so():
    text = "{" + " " * MAX_TOKENIZER_BYTES
    with pytest.raises(TokenizerError, match=f"m/tokenizer.json: {MAX_TOKENIZER_BYTES + 1:,} bytes is too large "
                                             f"for a tokenizer.json \\(the limit is {MAX_TOKENIZER_BYTES:,} bytes"):
        Tokenizer.from_json(text, "m/tokenizer.json")


def test_tokenizer_file_over_the_limit_is_not_read(tmp_path):
    path = tmp_path / "tokenizer.json"
    with open(path, "wb") as file:
        file.write(b"{")
        file.truncate(1200 * MB)  # the 1.2 GB file, sparse
    error, peak = peak_allocation(lambda: Tokenizer.from_file(path))
    assert isinstance(error, TokenizerError) and "is too large for a tokenizer.json" in str(error)
    assert peak < 1 * MB, peak


@pytest.mark.parametrize("text", [" " * 200_000, "ab" * 100_000, "Hello, world! " * 2_000 + "<|endoftext|>" * 50,
                                  "x", ""], ids=["200k spaces", "one 200k word", "prose and specials", "x", "empty"])
def test_encode_steps_add_up_to_encode_in_bounded_slices(text):
    tokenizer = Tokenizer.from_file(TINY_RANDOM / "tokenizer.json")
    parts = list(tokenizer.encode_steps(text))
    assert [i for part in parts for i in part] == Tokenizer.from_file(TINY_RANDOM / "tokenizer.json").encode(text)
    if len(set(text)) <= 2:  # one huge word: merged in slices too, not in one call
        assert len(parts) >= len(text) // ENCODE_SLICE, len(parts)


def test_words_are_split_in_chunks_exactly_as_in_one_go():
    """Chunk boundaries fall everywhere in 300,000 characters of the pieces the split regex treats
    specially (white-space runs before a word, contractions, digits, marks): the words are the same."""
    rng = np.random.default_rng(0)
    alphabet = [" ", "  ", "\n", "a", "bc", "1", "23", "'s", "'ll", "'", "!?", "é", "東京", "\u0301", "\t "]
    text = "".join(rng.choice(alphabet, 120_000))
    chunks = list(_split_words(text))
    assert len(chunks) > 5
    assert [word for chunk in chunks for word in chunk] == GPT2_SPLIT.compiled.findall(text)
    assert list(_split_words(" " * 100_000)) == [[" " * 100_000]]  # one word longer than a chunk


def test_long_text_encodes_as_hf_tokenizers_does():
    from tokenizers import Tokenizer as HFTokenizer  # the reference, installed by the test command

    rng = np.random.default_rng(1)
    words = ["the", " cat", "  ", " sat", "'s", "\n\n", " 42", "!", " naïve", " 東京", "   "]
    text = "".join(rng.choice(words, 40_000))  # ~130,000 characters: several chunks
    ours = Tokenizer.from_file(TINY_RANDOM / "tokenizer.json").encode(text)
    assert ours == HFTokenizer.from_file(str(TINY_RANDOM / "tokenizer.json")).encode(text).ids
