"""Checkpoint loading: both layouts, tied and untied heads, dtypes, shards, and every bad input.

Tiny checkpoints are written by the `safetensors` library into tmp_path.
"""

import json

import numpy as np
import pytest

from mamba_wasm.checkpoint import load_model, load_model_from_files
from mamba_wasm.errors import CheckpointError, ConfigError, SafetensorsError

import safetensors.numpy as safetensors_numpy  # installed by the test command

D, LAYERS, VOCAB, N, K, R = 8, 2, 20, 4, 3, 2  # d_in = 2 * D


def hf_config(**changes):
    config = dict(hidden_size=D, num_hidden_layers=LAYERS, vocab_size=VOCAB, state_size=N, expand=2,
                  conv_kernel=K, time_step_rank=R, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)
    config.update(changes)
    return config


def original_config(**changes):
    config = dict(d_model=D, n_layer=LAYERS, vocab_size=VOCAB - 3, pad_vocab_size_multiple=4,
                  ssm_cfg=dict(d_state=N, d_conv=K, expand=2, dt_rank=R), tie_embeddings=True)
    config.update(changes)
    return config


def hf_tensors(bias=False, conv_bias=True, lm_head=False, seed=0):
    """Tensors as transformers' MambaForCausalLM names and shapes them (float32)."""
    rng = np.random.default_rng(seed)
    d_in = 2 * D
    shapes = {"backbone.embeddings.weight": (VOCAB, D), "backbone.norm_f.weight": (D,)}
    if lm_head:
        shapes["lm_head.weight"] = (VOCAB, D)
    for i in range(LAYERS):
        p = f"backbone.layers.{i}."
        shapes.update({
            p + "norm.weight": (D,), p + "mixer.in_proj.weight": (2 * d_in, D),
            p + "mixer.conv1d.weight": (d_in, 1, K), p + "mixer.x_proj.weight": (R + 2 * N, d_in),
            p + "mixer.dt_proj.weight": (d_in, R), p + "mixer.dt_proj.bias": (d_in,),
            p + "mixer.A_log": (d_in, N), p + "mixer.D": (d_in,), p + "mixer.out_proj.weight": (D, d_in),
        })
        if bias:
            shapes.update({p + "mixer.in_proj.bias": (2 * d_in,), p + "mixer.out_proj.bias": (D,)})
        if conv_bias:
            shapes[p + "mixer.conv1d.bias"] = (d_in,)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def files_for(config, tensors):
    return {"config.json": json.dumps(config).encode(), "model.safetensors": safetensors_numpy.save(tensors)}


def write_folder(folder, files):
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return str(folder)


def load_error(files, kind=CheckpointError):
    with pytest.raises(kind) as info:
        load_model_from_files(files, "ckpt")
    return str(info.value)


# -- loading ---------------------------------------------------------------------------------------


def test_hf_layout_roles_and_conversions(tmp_path):
    tensors = hf_tensors(bias=True)
    model = load_model(write_folder(tmp_path / "m", files_for(hf_config(use_bias=True), tensors)))
    w = model.weights
    np.testing.assert_array_equal(w.embedding, tensors["backbone.embeddings.weight"])
    layer = w.layers[1]
    np.testing.assert_array_equal(layer.conv, tensors["backbone.layers.1.mixer.conv1d.weight"][:, 0, :])
    np.testing.assert_array_equal(layer.A, -np.exp(tensors["backbone.layers.1.mixer.A_log"]))
    np.testing.assert_array_equal(layer.in_proj_bias, tensors["backbone.layers.1.mixer.in_proj.bias"])
    np.testing.assert_array_equal(layer.out_proj, tensors["backbone.layers.1.mixer.out_proj.weight"])
    assert all(array.dtype == np.float32 for array in vars(layer).values())
    assert model.config.layout == "hf" and len(w.layers) == LAYERS


def test_float32_tensors_stay_views_of_the_file_bytes():
    files = files_for(hf_config(), hf_tensors())
    weights = load_model_from_files(files, "ckpt").weights
    file_bytes = np.frombuffer(files["model.safetensors"], np.uint8)
    assert np.shares_memory(weights.layers[0].in_proj, file_bytes)
    assert np.shares_memory(weights.layers[0].conv, file_bytes)


def test_files_may_be_memoryviews():
    files = {name: memoryview(data) for name, data in sharded_files(hf_tensors()).items()}
    assert load_model_from_files(files, "ckpt").config.d_model == D


def test_no_optional_biases():
    model = load_model_from_files(files_for(hf_config(use_conv_bias=False), hf_tensors(conv_bias=False)), "ckpt")
    layer = model.weights.layers[0]
    assert layer.in_proj_bias is None and layer.out_proj_bias is None and layer.conv_bias is None


def test_original_layout_with_padded_vocabulary():
    tensors = hf_tensors()
    tensors["backbone.embedding.weight"] = tensors.pop("backbone.embeddings.weight")
    model = load_model_from_files(files_for(original_config(), tensors), "ckpt")
    assert model.config.layout == "original" and model.config.vocab_size == VOCAB  # 17 padded to 20
    assert model.weights.lm_head is model.weights.embedding


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_upcast(dtype):
    tensors = hf_tensors()
    if dtype == "float16":
        half = {name: array.astype(np.float16) for name, array in tensors.items()}
        data = safetensors_numpy.save(half)
        reference = {name: array.astype(np.float32) for name, array in half.items()}
    else:
        import torch
        from safetensors.torch import save

        half = {name: torch.from_numpy(array).to(torch.bfloat16) for name, array in tensors.items()}
        data = save(half)
        reference = {name: tensor.float().numpy() for name, tensor in half.items()}
    files = {"config.json": json.dumps(hf_config()).encode(), "model.safetensors": data}
    weights = load_model_from_files(files, "ckpt").weights
    np.testing.assert_array_equal(weights.embedding, reference["backbone.embeddings.weight"])
    np.testing.assert_array_equal(weights.layers[0].x_proj, reference["backbone.layers.0.mixer.x_proj.weight"])
    assert weights.embedding.dtype == np.float32


# -- tied and untied lm_head -----------------------------------------------------------------------


def test_tied_lm_head_is_the_embedding():
    weights = load_model_from_files(files_for(hf_config(), hf_tensors()), "ckpt").weights
    assert weights.lm_head is weights.embedding


def test_untied_lm_head_is_read():
    tensors = hf_tensors(lm_head=True)
    weights = load_model_from_files(files_for(hf_config(tie_word_embeddings=False), tensors), "ckpt").weights
    np.testing.assert_array_equal(weights.lm_head, tensors["lm_head.weight"])


def test_untied_without_lm_head_is_missing():
    message = load_error(files_for(hf_config(tie_word_embeddings=False), hf_tensors()))
    assert "missing tensor 'lm_head.weight'" in message and "ckpt/model.safetensors" in message


def test_tied_hf_config_with_a_different_lm_head_uses_the_file():
    # transformers 5.x keeps a file's lm_head.weight that differs from the embedding, despite
    # tie_word_embeddings (it warns); mirror it.
    tensors = hf_tensors(lm_head=True)
    weights = load_model_from_files(files_for(hf_config(), tensors), "ckpt").weights
    np.testing.assert_array_equal(weights.lm_head, tensors["lm_head.weight"])


def test_tied_hf_config_with_an_equal_lm_head_shares_it():
    tensors = hf_tensors(lm_head=True)
    tensors["lm_head.weight"] = tensors["backbone.embeddings.weight"].copy()
    weights = load_model_from_files(files_for(hf_config(), tensors), "ckpt").weights
    assert weights.lm_head is weights.embedding


def test_tied_original_config_ignores_lm_head():
    # mamba_ssm's tie_weights replaces lm_head by the embedding whatever the file holds.
    tensors = hf_tensors(lm_head=True)
    tensors["backbone.embedding.weight"] = tensors.pop("backbone.embeddings.weight")
    weights = load_model_from_files(files_for(original_config(), tensors), "ckpt").weights
    assert weights.lm_head is weights.embedding


# -- sharded checkpoints ---------------------------------------------------------------------------


def sharded_files(tensors, config=None, shards=3):
    names = sorted(tensors)
    files = {"config.json": json.dumps(config or hf_config()).encode()}
    weight_map = {}
    for k in range(shards):
        shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {name: tensors[name] for name in names[k::shards]}
        files[shard] = safetensors_numpy.save(part)
        weight_map.update(dict.fromkeys(part, shard))
    files["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    return files


def test_sharded_equals_single_file(tmp_path):
    tensors = hf_tensors(bias=True)
    config = hf_config(use_bias=True)
    single = load_model(write_folder(tmp_path / "single", files_for(config, tensors))).weights
    sharded = load_model(write_folder(tmp_path / "sharded", sharded_files(tensors, config))).weights
    np.testing.assert_array_equal(single.embedding, sharded.embedding)
    for a, b in zip(single.layers, sharded.layers):
        for field, value in vars(a).items():
            np.testing.assert_array_equal(value, getattr(b, field), err_msg=field)


def test_missing_shard(tmp_path):
    files = sharded_files(hf_tensors())
    del files["model-00002-of-00003.safetensors"]
    with pytest.raises(CheckpointError) as info:
        load_model(write_folder(tmp_path / "m", files))
    assert "model-00002-of-00003.safetensors" in str(info.value) and "missing" in str(info.value)


def test_index_names_a_tensor_its_shard_lacks():
    files = sharded_files(hf_tensors())
    index = json.loads(files["model.safetensors.index.json"])
    index["weight_map"]["backbone.extra"] = "model-00001-of-00003.safetensors"
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    message = load_error(files)
    assert "'backbone.extra'" in message and "model-00001-of-00003.safetensors" in message


@pytest.mark.parametrize("index", [b"{not json", b"[]", b'{"weight_map": {"a": 1}}', b'{"weight_map": {"a": "../x"}}'])
def test_bad_index(index):
    files = sharded_files(hf_tensors())
    files["model.safetensors.index.json"] = index
    assert "model.safetensors.index.json" in load_error(files)


# -- bad input -------------------------------------------------------------------------------------


def test_not_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        load_model(str(tmp_path / "nowhere"))


def test_no_weights_file(tmp_path):
    folder = write_folder(tmp_path / "m", {"config.json": json.dumps(hf_config()).encode()})
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    assert "model.safetensors" in str(info.value) and "model.safetensors.index.json" in str(info.value)


def test_no_config_file(tmp_path):
    files = files_for(hf_config(), hf_tensors())
    del files["config.json"]
    with pytest.raises(ConfigError, match="config.json is missing"):
        load_model(write_folder(tmp_path / "m", files))


@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "vocab_size"])
def test_config_missing_key(key):
    config = hf_config()
    del config[key]
    message = load_error(files_for(config, hf_tensors()), ConfigError)
    assert "ckpt/config.json" in message and repr(key) in message


def test_config_unknown_layout_names_the_supported_ones():
    message = load_error(files_for({"n_embd": 8, "n_layer": 2}, hf_tensors()), ConfigError)
    assert "unknown checkpoint layout" in message and "MambaForCausalLM" in message and "state-spaces" in message


@pytest.mark.parametrize("change", [dict(hidden_size="8"), dict(use_bias="yes"), dict(num_hidden_layers=2.5),
                                    dict(time_step_rank="big"), dict(state_size=True)])
def test_config_wrong_types(change):
    message = load_error(files_for(hf_config(**change), hf_tensors()), ConfigError)
    assert "ckpt/config.json" in message


def test_config_not_json():
    files = files_for(hf_config(), hf_tensors())
    files["config.json"] = b"{"
    assert "not valid JSON" in load_error(files, ConfigError)


def test_missing_tensor():
    tensors = hf_tensors()
    del tensors["backbone.layers.1.mixer.D"]
    message = load_error(files_for(hf_config(), tensors))
    assert "missing tensor 'backbone.layers.1.mixer.D'" in message and "ckpt/model.safetensors" in message
    assert "more" not in message


def test_layout_mismatch_reports_the_missing_embedding():
    message = load_error(files_for(original_config(), hf_tensors()))
    assert "missing tensor 'backbone.embedding.weight'" in message


def test_shape_mismatch_names_tensor_expected_and_actual():
    tensors = hf_tensors()
    tensors["backbone.layers.0.mixer.x_proj.weight"] = np.zeros((R + 2 * N + 1, 2 * D), np.float32)
    message = load_error(files_for(hf_config(), tensors))
    assert "'backbone.layers.0.mixer.x_proj.weight'" in message
    assert f"{(R + 2 * N + 1, 2 * D)}" in message and f"expected {(R + 2 * N, 2 * D)}" in message
    assert "ckpt/model.safetensors" in message


def test_conv_weight_without_groups_axis_is_a_shape_mismatch():
    tensors = hf_tensors()
    tensors["backbone.layers.0.mixer.conv1d.weight"] = tensors["backbone.layers.0.mixer.conv1d.weight"][:, 0, :]
    message = load_error(files_for(hf_config(), tensors))
    assert "conv1d.weight" in message and f"expected {(2 * D, 1, K)}" in message


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8])
def test_unsupported_dtype(dtype):
    tensors = hf_tensors()
    tensors["backbone.norm_f.weight"] = tensors["backbone.norm_f.weight"].astype(dtype)
    message = load_error(files_for(hf_config(), tensors))
    assert "'backbone.norm_f.weight'" in message and "dtype" in message and "F32, F16, BF16" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(bad):
    tensors = hf_tensors()
    tensors["backbone.layers.1.mixer.dt_proj.bias"][3] = bad
    message = load_error(files_for(hf_config(), tensors))
    assert "'backbone.layers.1.mixer.dt_proj.bias'" in message and "non-finite" in message


def test_non_finite_after_upcast_from_float16():
    tensors = {name: array.astype(np.float16) for name, array in hf_tensors().items()}
    tensors["backbone.embeddings.weight"][0, 0] = np.inf
    message = load_error(files_for(hf_config(), tensors))
    assert "'backbone.embeddings.weight'" in message and "non-finite" in message


def test_unexpected_tensor_is_refused():
    # A bias that the config turns off would silently change the outputs if ignored.
    message = load_error(files_for(hf_config(use_bias=False), hf_tensors(bias=True)))
    assert "unexpected tensors" in message and "in_proj.bias" in message


def test_corrupt_file_is_a_safetensors_error():
    files = files_for(hf_config(), hf_tensors())
    files["model.safetensors"] = files["model.safetensors"][:-100]
    message = load_error(files, SafetensorsError)
    assert "ckpt/model.safetensors" in message
