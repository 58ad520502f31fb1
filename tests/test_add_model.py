"""`build.py add-model` (scripts/add_model.py): checkpoints of both layouts and both architectures
(Mamba-1, Mamba-2) converted, checked, registered.

Every conversion goes into a temporary models folder, never the site's models/. Tolerances: the
converted files must reproduce the source rounded to the chosen dtype exactly (the converter's own
conversion check; measured 0.0), the rounding error must be within add_model.TOLERANCE[dtype], and
transformers' MambaForCausalLM on the converted folder must match mamba_wasm within 1e-4, the
bound of tests/test_parity.py (both float32; the summation order differs).
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm.errors import ConfigError
from mamba_wasm.safetensors import BFLOAT16, read_safetensors, safetensors_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import add_model  # noqa: E402
from add_model import ConversionError  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "models")
TINY_RANDOM = os.path.join(ROOT, "models", "tiny-random")  # written by the safetensors library
TOKENIZER = os.path.join(TINY_RANDOM, "tokenizer.json")
SOURCES = {name: os.path.join(FIXTURES, name) for name in sorted(os.listdir(FIXTURES))}
SOURCES["tiny-random"] = TINY_RANDOM
DTYPES = ("f32", "f16", "bf16")
CASES = [(name, dtype) for name in SOURCES for dtype in DTYPES]
HF_TOLERANCE = 1e-4
MODEL_TYPE = {"Mamba-1": "mamba", "Mamba-2": "mamba2"}  # config.architecture -> transformers' model_type


def convert(source, models_dir, **options):
    options.setdefault("tokenizer", TOKENIZER)
    return add_model.add_model(str(source), str(models_dir), log=lambda message: None, **options)


def relative_error(ours, reference):
    return np.abs(ours - reference).max() / max(1.0, np.abs(reference).max())


def safetensors_header(path):
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        return length, json.loads(file.read(length))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Every source at every dtype, converted once into one models folder:
    (models folder, {(source, dtype): (entry, conversion error, rounding error)})."""
    models_dir = tmp_path_factory.mktemp("models")
    results = {(name, dtype): convert(SOURCES[name], models_dir, name=f"{name}-{dtype}", dtype=dtype)
               for name, dtype in CASES}
    return models_dir, results


# ---------------------------------------------------------------------------------------------
# Conversions: every layout, every dtype
# ---------------------------------------------------------------------------------------------

def test_fixtures_cover_both_layouts_shards_and_dtypes():
    assert {"hf_tied_bias", "hf_untied_nobias", "hf_untied_k3", "original_layout", "f16_sharded", "bf16"} <= set(SOURCES)


@pytest.mark.parametrize("name, dtype", CASES)
def test_converted_model_reproduces_the_source(converted, name, dtype):
    models_dir, results = converted
    entry, conversion_error, rounding_error = results[(name, dtype)]
    source = mamba_wasm.load_model(SOURCES[name])
    output = mamba_wasm.load_model(os.path.join(models_dir, entry["path"]))
    assert output.config == replace(source.config, layout="hf")
    assert conversion_error == 0.0
    assert rounding_error <= add_model.TOLERANCE[dtype]
    ids = add_model.prompt_ids(source.config.vocab_size)
    assert relative_error(output.forward(ids), source.forward(ids)) == pytest.approx(rounding_error, abs=1e-9)
    if dtype == "f32":  # from F32, F16 or BF16 the upcast is exact
        assert rounding_error == 0.0
    expected_path = os.path.join(SOURCES[name], "expected.npz")
    if os.path.exists(expected_path):  # HF transformers' logits for the source checkpoint
        expected = np.load(expected_path)
        ours = output.forward(expected["prompt_ids"].tolist())
        assert relative_error(ours, expected["logits"]) <= add_model.TOLERANCE[dtype] + HF_TOLERANCE


@pytest.mark.parametrize("name, dtype", CASES)
def test_output_is_hf_layout_at_the_chosen_dtype(converted, name, dtype):
    models_dir, results = converted
    folder = os.path.join(models_dir, results[(name, dtype)][0]["path"])
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "tokenizer.json"]
    config = json.loads(open(os.path.join(folder, "config.json")).read())
    architecture = mamba_wasm.load_model(SOURCES[name]).config.architecture
    assert config["model_type"] == MODEL_TYPE[architecture] and "d_model" not in config
    assert config["dtype"] == {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype]
    length, header = safetensors_header(os.path.join(folder, "model.safetensors"))
    assert length % 8 == 0
    assert header.pop("__metadata__") == {"format": "pt"}
    assert {entry["dtype"] for entry in header.values()} == {dtype.upper()}
    assert "backbone.embeddings.weight" in header and "backbone.embedding.weight" not in header
    assert ("lm_head.weight" in header) == (not config["tie_word_embeddings"])
    spans = sorted(entry["data_offsets"] for entry in header.values())
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # no gaps
    assert open(os.path.join(folder, "tokenizer.json"), "rb").read() == open(TOKENIZER, "rb").read()


def test_original_layout_keeps_its_padded_vocabulary(converted):
    models_dir, results = converted
    config = json.loads(open(os.path.join(models_dir, "original_layout-f32", "config.json")).read())
    assert json.loads(open(os.path.join(FIXTURES, "original_layout", "config.json")).read())["vocab_size"] == 250
    assert config["vocab_size"] == 256 and config["hidden_size"] == 40 and config["tie_word_embeddings"] is True


def test_mamba2_original_layout_becomes_transformers_mamba2_config(converted):
    models_dir, results = converted
    config = json.loads(open(os.path.join(models_dir, "mamba2_original_layout-f32", "config.json")).read())
    source = json.loads(open(os.path.join(FIXTURES, "mamba2_original_layout", "config.json")).read())
    assert source["vocab_size"] == 250 and source["ssm_cfg"]["layer"] == "Mamba2"
    assert config["model_type"] == "mamba2" and config["architectures"] == ["Mamba2ForCausalLM"]
    assert (config["vocab_size"], config["num_heads"], config["head_dim"], config["n_groups"]) == (256, 8, 10, 2)
    assert config["time_step_limit"] == [0.0, {"__float__": "Infinity"}]  # as transformers writes infinity


def test_mamba2_original_layout_with_another_epsilon_is_refused(tmp_path):
    """transformers' Mamba2 has one epsilon for both norms; mamba_ssm's gated norm has 1e-5 whatever
    norm_epsilon says, so another norm_epsilon has no transformers config."""
    source = tmp_path / "source"
    shutil.copytree(os.path.join(FIXTURES, "mamba2_original_layout"), source)
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "norm_epsilon": 1e-6}))
    (tmp_path / "models").mkdir()
    with pytest.raises(ConversionError, match="the HF config written would describe another model"):
        convert(source, tmp_path / "models")
    assert not os.listdir(tmp_path / "models")


def test_index_lists_every_conversion(converted):
    models_dir, results = converted
    index = json.loads(open(os.path.join(models_dir, "index.json")).read())
    assert index["default"] == f"{CASES[0][0]}-{CASES[0][1]}"
    assert [entry["name"] for entry in index["models"]] == [f"{name}-{dtype}" for name, dtype in CASES]
    for entry, (name, dtype) in zip(index["models"], CASES):
        folder = os.path.join(models_dir, entry["path"])
        assert entry == results[(name, dtype)][0]
        assert set(entry) == {"name", "path", "description", "files", "size", "n_params", "dtype", "added_by"}
        assert entry["dtype"] == dtype and entry["files"] == ["config.json", "model.safetensors", "tokenizer.json"]
        assert entry["size"] == sum(os.path.getsize(os.path.join(folder, f)) for f in entry["files"])
        assert entry["n_params"] == mamba_wasm.load_model(folder).n_params == mamba_wasm.load_model(SOURCES[name]).n_params


def test_f16_halves_the_download(converted):
    models_dir, _ = converted
    size = {dtype: os.path.getsize(os.path.join(models_dir, f"tiny-random-{dtype}", "model.safetensors")) for dtype in DTYPES}
    assert 0.49 < size["f16"] / size["f32"] < 0.51
    assert abs(size["bf16"] - size["f16"]) <= 64  # the same bytes per value; only the header differs


def test_f32_file_is_the_safetensors_librarys_own(converted):
    """models/tiny-random was written by save_pretrained (the safetensors library): our writer
    produces the identical bytes, header and order included."""
    models_dir, _ = converted
    ours = open(os.path.join(models_dir, "tiny-random-f32", "model.safetensors"), "rb").read()
    assert ours == open(os.path.join(TINY_RANDOM, "model.safetensors"), "rb").read()


# ---------------------------------------------------------------------------------------------
# transformers loads what we write
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, dtype", CASES)
def test_transformers_loads_the_output(converted, name, dtype):
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    models_dir, results = converted
    folder = os.path.join(models_dir, results[(name, dtype)][0]["path"])
    ours = mamba_wasm.load_model(folder)
    hf_class = {"Mamba-1": transformers.MambaForCausalLM,
                "Mamba-2": transformers.Mamba2ForCausalLM}[ours.config.architecture]
    model, info = hf_class.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids = add_model.prompt_ids(ours.config.vocab_size)
    with torch.no_grad():
        reference = model.eval()(torch.tensor([ids])).logits[0].numpy()
    assert relative_error(ours.forward(ids), reference) <= HF_TOLERANCE


# ---------------------------------------------------------------------------------------------
# pytorch_model.bin through torch.load(weights_only=True)
# ---------------------------------------------------------------------------------------------

def _state_dict(torch, name):
    """The fixture's tensors as torch tensors, in their file dtype (BF16 included)."""
    tensors = {}
    for file in sorted(os.listdir(SOURCES[name])):
        if file.endswith(".safetensors"):
            for key, array in read_safetensors(open(os.path.join(SOURCES[name], file), "rb").read()).items():
                if array.dtype == BFLOAT16:
                    tensors[key] = torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
                else:
                    tensors[key] = torch.from_numpy(array.copy())
    return tensors


def _bin_checkpoint(torch, name, folder, shards=1):
    os.makedirs(folder)
    shutil.copyfile(os.path.join(SOURCES[name], "config.json"), os.path.join(folder, "config.json"))
    state = _state_dict(torch, name)
    if name == "original_layout":  # mamba_ssm saves its tied head too
        state["lm_head.weight"] = state["backbone.embedding.weight"]
    if shards == 1:
        torch.save(state, os.path.join(folder, "pytorch_model.bin"))
        return
    keys, weight_map = sorted(state), {}
    for i in range(shards):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {key: state[key] for key in keys[i::shards]}
        torch.save(part, os.path.join(folder, file))
        weight_map.update(dict.fromkeys(part, file))
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as file:
        json.dump({"metadata": {}, "weight_map": weight_map}, file)


@pytest.mark.parametrize("name, shards", [("hf_untied_k3", 1), ("bf16", 1), ("original_layout", 1), ("f16_sharded", 3)])
def test_pytorch_bin_converts(tmp_path, name, shards):
    import torch
    _bin_checkpoint(torch, name, tmp_path / "source", shards)
    (tmp_path / "models").mkdir()
    entry, conversion_error, rounding_error = convert(tmp_path / "source", tmp_path / "models")
    assert entry["name"] == "source" and conversion_error == rounding_error == 0.0
    ours = mamba_wasm.load_model(str(tmp_path / "models" / "source"))
    expected = np.load(os.path.join(SOURCES[name], "expected.npz"))
    assert relative_error(ours.forward(expected["prompt_ids"].tolist()), expected["logits"]) <= HF_TOLERANCE


def test_pytorch_bin_without_torch_says_so(tmp_path, monkeypatch):
    import torch
    _bin_checkpoint(torch, "hf_untied_k3", tmp_path / "source")
    (tmp_path / "models").mkdir()
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(ConversionError, match="needs PyTorch"):
        convert(tmp_path / "source", tmp_path / "models")


def test_corrupt_pytorch_bin(tmp_path):
    import torch  # noqa: F401  (installed by the test command)
    (tmp_path / "source").mkdir()
    (tmp_path / "models").mkdir()
    shutil.copyfile(os.path.join(SOURCES["hf_untied_k3"], "config.json"), tmp_path / "source" / "config.json")
    (tmp_path / "source" / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(ConversionError, match=r"torch.load\(weights_only=True\) failed"):
        convert(tmp_path / "source", tmp_path / "models")


# ---------------------------------------------------------------------------------------------
# The bf16 rounding (the writer: tests/test_safetensors.py)
# ---------------------------------------------------------------------------------------------

def test_bf16_rounding_matches_torch():
    import torch
    rng = np.random.default_rng(0)
    values = rng.standard_normal(10_000).astype(np.float32) * np.float32(10.0) ** rng.integers(-30, 30, 10_000)
    ties = (rng.integers(0, 0x7F00, 1000, dtype=np.uint32) << 16 | 0x8000).view(np.float32)  # exactly halfway
    x = np.concatenate([values.astype(np.float32), ties, np.float32([0.0, -0.0, 3.0e38])])
    ours = add_model.cast(x, "bf16", "x").view(np.int16)
    reference = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy()
    assert np.array_equal(ours, reference)


def test_overflow_is_refused_with_advice(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SOURCES["hf_untied_nobias"], source)
    tensors = {key: np.array(value) for key, value in read_safetensors((source / "model.safetensors").read_bytes()).items()}
    tensors["backbone.norm_f.weight"][0] = 1e5  # beyond float16's 65504
    (source / "model.safetensors").write_bytes(safetensors_bytes(tensors))
    (tmp_path / "models").mkdir()
    with pytest.raises(ConversionError, match=r"'backbone.norm_f.weight'.*overflow f16; use --dtype bf16 or f32"):
        convert(source, tmp_path / "models", dtype="f16")
    assert os.listdir(tmp_path / "models") == []
    convert(source, tmp_path / "models", dtype="bf16")


# ---------------------------------------------------------------------------------------------
# Failed verification registers nothing
# ---------------------------------------------------------------------------------------------

def test_rounding_error_over_tolerance_registers_nothing(tmp_path, monkeypatch):
    convert(SOURCES["hf_tied_bias"], tmp_path, name="kept")
    index_before = (tmp_path / "index.json").read_bytes()
    monkeypatch.setitem(add_model.TOLERANCE, "f16", 1e-9)
    with pytest.raises(ConversionError, match=r"rounding to f16 moves this model's logits by .* --dtype f32"):
        convert(SOURCES["hf_tied_bias"], tmp_path, name="refused", dtype="f16")
    assert sorted(os.listdir(tmp_path)) == ["index.json", "kept"]  # no output, no staging folder
    assert (tmp_path / "index.json").read_bytes() == index_before
    _, _, rounding_error = convert(SOURCES["hf_tied_bias"], tmp_path, name="accepted", dtype="f16", tolerance=1e-2)
    assert 1e-9 < rounding_error <= 1e-2


def test_conversion_bug_is_caught(tmp_path, monkeypatch):
    def swapped_norms(tensors, config):
        out = dict(original(tensors, config))
        a, b = "backbone.layers.0.norm.weight", "backbone.layers.1.norm.weight"
        out[a], out[b] = out[b], out[a]
        return out

    original = add_model.hf_tensors
    monkeypatch.setattr(add_model, "hf_tensors", swapped_norms)
    with pytest.raises(ConversionError, match="do not reproduce the source"):
        convert(SOURCES["hf_untied_k3"], tmp_path, dtype="bf16")
    assert os.listdir(tmp_path) == []


def test_force_replaces_the_model_and_its_entry(tmp_path):
    convert(SOURCES["hf_tied_bias"], tmp_path, name="m")
    convert(SOURCES["hf_untied_k3"], tmp_path, name="other")
    with pytest.raises(ConversionError, match=r"'m' already exists.*--force.*--name"):
        convert(SOURCES["original_layout"], tmp_path, name="m", dtype="f16")
    convert(SOURCES["original_layout"], tmp_path, name="m", dtype="f16", force=True)
    index = json.loads((tmp_path / "index.json").read_text())
    assert [(entry["name"], entry["dtype"]) for entry in index["models"]] == [("m", "f16"), ("other", "f32")]
    assert mamba_wasm.load_model(str(tmp_path / "m")).config.d_model == 40
    assert sorted(os.listdir(tmp_path)) == ["index.json", "m", "other"]


def test_name_defaults_to_the_folder_and_entries_keep_the_site_format(tmp_path):
    site_index = {"default": "tiny-random", "models": [{"name": "tiny-random", "path": "tiny-random",
                                                         "description": "x", "files": ["config.json"]}]}
    (tmp_path / "index.json").write_text(json.dumps(site_index))
    entry, _, _ = convert(SOURCES["bf16"], tmp_path, description="A model")
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["default"] == "tiny-random" and index["models"][0] == site_index["models"][0]
    assert index["models"][1] == entry and entry["name"] == entry["path"] == "bf16"
    assert entry["description"] == "A model"


def test_the_default_dtype_is_the_sources(tmp_path):
    for source, dtype in (("bf16", "bf16"), ("f16_sharded", "f16"), ("hf_tied_bias", "f32")):
        entry, conversion_error, rounding_error = convert(SOURCES[source], tmp_path, name=source)
        assert entry["dtype"] == dtype and conversion_error == rounding_error == 0.0
        _, header = safetensors_header(tmp_path / source / "model.safetensors")
        assert {e["dtype"] for k, e in header.items() if k != "__metadata__"} == {dtype.upper()}
    bf16_source = sum(os.path.getsize(os.path.join(SOURCES["bf16"], f)) for f in os.listdir(SOURCES["bf16"])
                      if f.endswith(".safetensors"))
    assert os.path.getsize(tmp_path / "bf16" / "model.safetensors") <= bf16_source + 4096  # not doubled to f32


def test_a_source_mixing_dtypes_is_written_in_f32(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SOURCES["hf_untied_nobias"], source)
    tensors = {key: np.array(value) for key, value in read_safetensors((source / "model.safetensors").read_bytes()).items()}
    tensors["backbone.norm_f.weight"] = tensors["backbone.norm_f.weight"].astype(np.float16)
    (source / "model.safetensors").write_bytes(safetensors_bytes(tensors))
    (tmp_path / "models").mkdir()
    entry, _, rounding_error = convert(source, tmp_path / "models")
    assert entry["dtype"] == "f32" and rounding_error == 0.0


def test_shard_size_writes_hf_shards_and_an_index_that_load_as_one_model(tmp_path):
    entry, conversion_error, _ = convert(SOURCES["hf_tied_bias"], tmp_path, name="sharded", shard_size=20_000)
    folder = tmp_path / "sharded"
    shards = sorted(f for f in os.listdir(folder) if f.startswith("model-"))
    assert len(shards) >= 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert entry["files"] == ["config.json", "model.safetensors.index.json", *shards, "tokenizer.json"]
    assert sorted(os.listdir(folder)) == sorted(entry["files"])
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    tensors = {}
    for shard in shards:
        length, header = safetensors_header(folder / shard)
        data = {k: v for k, v in header.items() if k != "__metadata__"}
        assert len(data) == 1 or os.path.getsize(folder / shard) - 8 - length <= 20_000
        tensors.update(dict.fromkeys(data, shard))
    assert index["weight_map"] == tensors
    assert index["metadata"]["total_size"] == sum(os.path.getsize(folder / s) - 8 - safetensors_header(folder / s)[0]
                                                  for s in shards)
    assert conversion_error == 0.0
    source = mamba_wasm.load_model(SOURCES["hf_tied_bias"])
    ids = add_model.prompt_ids(source.config.vocab_size)
    assert np.array_equal(mamba_wasm.load_model(str(folder)).forward(ids), source.forward(ids))
    import torch
    import transformers
    reference = transformers.MambaForCausalLM.from_pretrained(folder, dtype=torch.float32)  # reads our shards
    with torch.no_grad():
        logits = reference(torch.tensor([ids])).logits[0].numpy()
    assert relative_error(source.forward(ids), logits) <= HF_TOLERANCE


def test_a_big_shard_size_writes_one_file(tmp_path):
    entry, _, _ = convert(SOURCES["hf_tied_bias"], tmp_path, name="one", shard_size=10**9)
    assert entry["files"] == ["config.json", "model.safetensors", "tokenizer.json"]


@pytest.mark.parametrize("text,size", [("500MB", 500 * 10**6), ("2GB", 2 * 10**9), ("1.5GiB", 3 * 2**29),
                                       ("123", 123), ("64kib", 65536)])
def test_shard_sizes_are_read_with_units(text, size):
    assert add_model.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "big", "5TB", "-1MB", "0"])
def test_bad_shard_sizes_are_refused(text):
    with pytest.raises(ConversionError, match="shard size"):
        add_model.parse_size(text)


def test_remove_deletes_an_added_model_and_only_such_a_model(tmp_path):
    site_index = {"default": "shipped", "models": [{"name": "shipped", "path": "shipped", "description": "x",
                                                    "files": ["config.json"]}]}
    (tmp_path / "index.json").write_text(json.dumps(site_index))
    (tmp_path / "shipped").mkdir()
    convert(SOURCES["hf_tied_bias"], tmp_path, name="mine")
    convert(SOURCES["bf16"], tmp_path, name="other")
    add_model.remove_model("mine", str(tmp_path), log=lambda message: None)
    index = json.loads((tmp_path / "index.json").read_text())
    assert [entry["name"] for entry in index["models"]] == ["shipped", "other"] and index["default"] == "shipped"
    assert sorted(os.listdir(tmp_path)) == ["index.json", "other", "shipped"]
    with pytest.raises(ConversionError, match=r"no model named 'mine'.*listed: 'shipped', 'other'"):
        add_model.remove_model("mine", str(tmp_path))
    with pytest.raises(ConversionError, match="'shipped' was not added by add-model, so it is left alone"):
        add_model.remove_model("shipped", str(tmp_path))
    index["default"] = "other"
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ConversionError, match="'other' is the site's default model"):
        add_model.remove_model("other", str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["index.json", "other", "shipped"]


# ---------------------------------------------------------------------------------------------
# Errors the user can fix
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "", ".", "..", ".hidden", "-x", "x" * 65, "a b"])
def test_invalid_names_are_refused(tmp_path, name):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    with pytest.raises(ConversionError, match="invalid model name"):
        convert(SOURCES["hf_tied_bias"], models_dir, name=name)
    assert os.listdir(tmp_path) == ["models"] and os.listdir(models_dir) == []


def test_missing_and_wrong_paths(tmp_path):
    (tmp_path / "models").mkdir()
    models = tmp_path / "models"
    with pytest.raises(ConversionError, match="no such folder"):
        convert(tmp_path / "nowhere", models)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConversionError, match="not a folder"):
        convert(tmp_path / "file", models)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="config.json is missing"):
        convert(tmp_path / "empty", models)
    shutil.copyfile(os.path.join(SOURCES["bf16"], "config.json"), tmp_path / "empty" / "config.json")
    with pytest.raises(ConversionError, match="no weights found"):
        convert(tmp_path / "empty", models)
    with pytest.raises(ConversionError, match="the models folder does not exist"):
        convert(SOURCES["bf16"], tmp_path / "no-models")
    with pytest.raises(ConversionError, match=r"tokenizer.json is missing.*--tokenizer.*gpt-neox-20b"):
        convert(SOURCES["bf16"], models, tokenizer=None)
    with pytest.raises(ConversionError, match="tokenizer.json is missing"):
        convert(SOURCES["bf16"], models, tokenizer=str(tmp_path / "tokenizer.json"))
    assert os.listdir(models) == []


def test_unknown_layout(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SOURCES["bf16"], source)
    (source / "config.json").write_text(json.dumps({"n_embd": 16}))
    (tmp_path / "models").mkdir()
    with pytest.raises(ConfigError, match="unknown checkpoint layout"):
        convert(source, tmp_path / "models")


def test_tokenizer_is_read_with_the_pages_tokenizer(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))
    with pytest.raises(mamba_wasm.TokenizerError):
        convert(SOURCES["bf16"], tmp_path, tokenizer=str(tmp_path / "tokenizer.json"))


# ---------------------------------------------------------------------------------------------
# The command line: python3 build.py add-model ...
# ---------------------------------------------------------------------------------------------

def test_build_py_add_model_end_to_end(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "build.py"), "add-model", SOURCES["original_layout"],
               "--dtype", "f16", "--name", "cli", "--tokenizer", TOKENIZER, "--models-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "verified on 32 token ids" in result.stdout and "registered 'cli'" in result.stdout
    entry = json.loads((tmp_path / "index.json").read_text())["models"][0]
    assert entry["name"] == "cli" and entry["dtype"] == "f16"
    assert mamba_wasm.load_model(str(tmp_path / "cli")).config.vocab_size == 256

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1
    assert "add-model: error:" in again.stderr and "--force" in again.stderr and "Traceback" not in again.stderr

    remove = [sys.executable, os.path.join(ROOT, "build.py"), "add-model", "--remove", "cli", "--models-dir", str(tmp_path)]
    removed = subprocess.run(remove, capture_output=True, text=True, timeout=300)
    assert removed.returncode == 0, removed.stderr
    assert f"removed 'cli': {tmp_path / 'cli'}" in removed.stdout
    assert json.loads((tmp_path / "index.json").read_text())["models"] == [] and not (tmp_path / "cli").exists()
    neither = subprocess.run(remove[:3] + ["--models-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert neither.returncode == 2 and "give a checkpoint folder PATH to add, or --remove NAME" in neither.stderr
