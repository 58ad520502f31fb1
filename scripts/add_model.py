#!/usr/bin/env python3
"""Convert a local Mamba or Mamba-2 checkpoint into the site's models/ folder, then check its logits.

    python3 build.py add-model PATH [--dtype f32|f16|bf16] [--name NAME] [--tokenizer FILE]
                                    [--description TEXT] [--force] [--tolerance X] [--models-dir DIR]
                                    [--shard-size SIZE]
    python3 build.py add-model --remove NAME [--models-dir DIR]

build.py runs this file with a Python that has NumPy; torch is needed only for pytorch_model.bin.

Input, the folder PATH, in either layout mamba_wasm reads (the key mapping is in mamba_wasm/config.py):
    config.json         transformers' MambaConfig or Mamba2Config keys (hidden_size, ...) or
                        state-spaces/mamba's (d_model, n_layer, ssm_cfg, ...; ssm_cfg.layer "Mamba2")
    model.safetensors   or model.safetensors.index.json with its shards, or pytorch_model.bin (or
                        pytorch_model.bin.index.json with its shards), read by torch.load(weights_only=True)
    tokenizer.json      the HF `tokenizers` file the page tokenizes with (or --tokenizer FILE)
or PATH is one llama.cpp .gguf file (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), read by mamba_wasm's
GGUF loader: its tensors dequantized to float32 (ssm_a's A = -exp(A_log) written back as A_log), its
metadata as an HF config.json, and its tokenizer as tokenizer.json unless --tokenizer is given.
Output, models/NAME/ in transformers' layout, which both the page and
MambaForCausalLM.from_pretrained (Mamba2ForCausalLM for a Mamba-2) load:
    config.json         HF keys; an original checkpoint's padded vocabulary (50277 -> 50280) is kept
    model.safetensors   every tensor at --dtype: by default the source's own (f32 when it mixes
                        dtypes), so nothing is rounded and nothing grows; f16 halves an f32 download.
                        Written by mamba_wasm.safetensors' NumPy writer (no safetensors library).
                        With --shard-size, files of at most that size (one tensor larger than it gets
                        a file of its own) named model-0000X-of-0000Y.safetensors, plus
                        model.safetensors.index.json, as transformers' save_pretrained writes them
    tokenizer.json      copied
and NAME's entry in models/index.json (appended, or replaced in place with --force), marked as
added by add-model: `--remove NAME` deletes such a model (folder and entry), but not the default
one while other models remain.

Verification: the converted folder is loaded by mamba_wasm (the loader the page runs) and run over
PROMPT_LENGTH fixed token ids, as are the source and the source with its weights rounded to --dtype.
Each error is max |logits - reference| / max(1, max |reference|):
    conversion error  against the rounded source: the same float32 numbers through the same code, so
                      anything above CONVERSION_TOLERANCE is a bug (a tensor or config key mapped
                      wrongly), whatever the dtype; measured 0.0 on every test checkpoint
    rounding error    against the source: what --dtype costs this model; above TOLERANCE[dtype] (or
                      --tolerance) the model is too sensitive to that rounding to ship at that dtype
Either failure removes the output and registers nothing. Memory: the source file, its float32 model
and, for f16/bf16, a rounded copy are held at once (about 4x the f32 size).
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import replace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mamba_wasm import MambaWasmError, Tokenizer, load_model  # noqa: E402
from mamba_wasm.checkpoint import (  # noqa: E402  (the loader's own readers: we read what the page reads)
    CONFIG_FILE,
    EMBEDDING_KEY,
    INDEX_FILE,
    LAYER_PREFIX,
    LM_HEAD_KEY,
    NORM_F_KEY,
    SINGLE_FILE,
    _layer_keys,
    load_model_from_files,
    read_folder,
    read_tensors,
)
from mamba_wasm.gguf import read_gguf  # noqa: E402
from mamba_wasm.gguf_checkpoint import is_gguf, load_gguf_model  # noqa: E402
from mamba_wasm.gguf_tokenizer import tokenizer_json_from_gguf  # noqa: E402
from mamba_wasm.config import config_from_json  # noqa: E402
from mamba_wasm.safetensors import (  # noqa: E402
    BFLOAT16,
    DTYPE_NAMES,
    safetensors_bytes,
    to_float32,
    write_safetensors,
)

BIN_FILE = "pytorch_model.bin"
BIN_INDEX_FILE = "pytorch_model.bin.index.json"
TOKENIZER_FILE = "tokenizer.json"
ADDED_BY = "add-model"  # the mark on the index entries this script wrote, which --remove may delete
SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
DEFAULT_MODELS_DIR = os.path.join(ROOT, "models")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # one folder name: no '/', no leading '.'

HF_DTYPE_NAMES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
PROMPT_LENGTH = 32
CONVERSION_TOLERANCE = 1e-5
# The rounding error scales with the dtype's unit roundoff u (f16 2^-11, bf16 2^-8): error / u was
# 0.5-1.6 on the test fixtures and 5-13 on HF-initialised models 256 wide and 8 to 24 layers deep
# (f16 2.5e-3, 5.2e-3; bf16 2.1e-2, 5.0e-2), alike for both dtypes; 40u leaves 3x headroom. Models far
# above it are chaotic: in a mamba-130m-shaped HF initialisation a 1e-6 relative change of the
# embedding alone moved the logits by 1.6e-3, and f16 by 0.33; such a model needs f32 (exact).
TOLERANCE = {"f32": 1e-5, "f16": 40 * 2.0**-11, "bf16": 40 * 2.0**-8}


class ConversionError(MambaWasmError):
    """The checkpoint cannot be converted or registered as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------------
# Reading the source checkpoint: {file name: bytes} as mamba_wasm's loader takes them
# ---------------------------------------------------------------------------------------------

def read_checkpoint(folder):
    """config.json plus model.safetensors, or its index and shards; a pytorch_model.bin checkpoint
    (or a .gguf file) is re-encoded as one in-memory model.safetensors so that one loader checks
    every layout."""
    if is_gguf(folder) and os.path.isfile(folder):
        return read_gguf_checkpoint(folder)
    if not os.path.exists(folder):
        raise ConversionError(f"{folder}: no such folder")
    if not os.path.isdir(folder):
        raise ConversionError(f"{folder}: not a folder (give the checkpoint folder that holds {CONFIG_FILE})")
    if not os.path.isfile(os.path.join(folder, CONFIG_FILE)):
        raise ConversionError(f"{folder}: {CONFIG_FILE} is missing; this is not a checkpoint folder")
    files = read_folder(folder)
    if SINGLE_FILE in files or INDEX_FILE in files:
        return files  # a missing shard is reported by the loader, which names it
    if not (os.path.isfile(os.path.join(folder, BIN_FILE)) or os.path.isfile(os.path.join(folder, BIN_INDEX_FILE))):
        raise ConversionError(
            f"{folder}: no weights found (expected {SINGLE_FILE}, {INDEX_FILE} with its shards, "
            f"{BIN_FILE} or {BIN_INDEX_FILE})"
        )
    files[SINGLE_FILE] = safetensors_bytes(_read_pytorch_bin(folder))
    return files


def read_gguf_checkpoint(path):
    """{config.json, model.safetensors} in HF layout, float32, from a .gguf file (see the docstring)."""
    model = load_gguf_model(read_gguf(_read(os.path.dirname(path), os.path.basename(path)), path))
    config, weights = model.config, model.weights
    if config.architecture != "Mamba-1":
        raise ConversionError(
            f"{path}: a {config.architecture} file; add-model converts Mamba-1 .gguf files only "
            "(load_model reads this one directly)"
        )
    tensors = {EMBEDDING_KEY["hf"]: weights.embedding, NORM_F_KEY: weights.norm_f}
    if not config.tie_embeddings:
        tensors[LM_HEAD_KEY] = weights.lm_head
    for i, layer in enumerate(weights.layers):
        for field, spec in _layer_keys(config).items():
            if spec is not None:
                tensors[LAYER_PREFIX.format(i=i) + spec[0]] = getattr(layer, field).reshape(spec[1])
    for i in range(config.n_layer):
        key = LAYER_PREFIX.format(i=i) + "mixer.A_log"
        tensors[key] = np.log(-tensors[key])  # the loader computes A = -exp(A_log) again
    buffer = io.BytesIO()
    write_safetensors(buffer, tensors)
    return {CONFIG_FILE: json.dumps(hf_config({}, config, "f32")), SINGLE_FILE: buffer.getvalue()}


def _read_pytorch_bin(folder):
    """{name: array in the file's dtype} from pytorch_model.bin or its shards."""
    try:
        import torch  # optional: only this input format needs it
    except ImportError:
        raise ConversionError(
            f"{folder}: reading {BIN_FILE} needs PyTorch (pip install torch), which is not installed; "
            "or give a checkpoint saved as model.safetensors"
        ) from None
    if os.path.isfile(os.path.join(folder, BIN_FILE)):
        shards = [BIN_FILE]
    else:
        try:
            weight_map = json.loads(_read(folder, BIN_INDEX_FILE))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConversionError(f"{folder}/{BIN_INDEX_FILE}: expected a 'weight_map' object ({exc})") from None
    tensors = {}
    for shard in shards:
        path = os.path.join(folder, shard)
        if os.path.basename(shard) != shard or not os.path.isfile(path):
            raise ConversionError(f"{folder}/{BIN_INDEX_FILE}: shard {shard!r} is missing")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
            raise ConversionError(f"{path}: torch.load(weights_only=True) failed: {exc}") from None
        if not isinstance(state, dict):
            raise ConversionError(f"{path}: expected a state dict (tensor name -> tensor), got {type(state).__name__}")
        for name, tensor in state.items():
            tensors[name] = _tensor_to_numpy(torch, tensor, f"{path}: tensor {name!r}")
    return tensors


def _tensor_to_numpy(torch, tensor, where):
    if not isinstance(tensor, torch.Tensor):
        raise ConversionError(f"{where}: expected a tensor, got {type(tensor).__name__}")
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16: keep the 16 bits
        return tensor.view(torch.int16).numpy().view(BFLOAT16)
    if tensor.dtype in (torch.float32, torch.float16):
        return tensor.numpy()
    raise ConversionError(f"{where}: dtype {tensor.dtype} is not supported (float32, float16, bfloat16)")


def _read(folder, name):
    with open(os.path.join(folder, name), "rb") as file:
        return file.read()


# ---------------------------------------------------------------------------------------------
# Converting: HF keys for config.json and for the tensors, every tensor at the chosen dtype
# ---------------------------------------------------------------------------------------------

def source_dtype(tensors):
    """The dtype that holds every tensor of the source exactly: its own, or f32 when it mixes dtypes."""
    names = {DTYPE_NAMES[array.dtype] for array in tensors.values()}
    return names.pop().lower() if len(names) == 1 and names <= {"F32", "F16", "BF16"} else "f32"


def hf_config(raw, config, dtype):
    """config.json for transformers' MambaConfig or Mamba2Config. An HF source keeps all its keys."""
    if config.layout == "hf":
        out = dict(raw)
        out.pop("torch_dtype", None)  # transformers 4.x's name for "dtype"
    elif config.architecture == "Mamba-2":
        out = hf_mamba2_config(raw, config)
    else:
        out = {
            "architectures": ["MambaForCausalLM"],
            "model_type": "mamba",
            "hidden_size": config.d_model,
            "num_hidden_layers": config.n_layer,
            "vocab_size": config.vocab_size,  # padded, as many as the embedding's rows
            "state_size": config.d_state,
            "conv_kernel": config.d_conv,
            "expand": config.expand,
            "intermediate_size": config.d_inner,
            "time_step_rank": config.dt_rank,
            "layer_norm_epsilon": config.norm_eps,
            "use_bias": config.proj_bias,
            "use_conv_bias": config.conv_bias,
            "tie_word_embeddings": config.tie_embeddings,
            "residual_in_fp32": raw.get("residual_in_fp32", True),
            "hidden_act": "silu",
        }
    out["dtype"] = HF_DTYPE_NAMES[dtype]
    return out


def hf_mamba2_config(raw, config):
    """transformers' Mamba2Config keys for a state-spaces Mamba-2. Its gated RMSNorm's epsilon is
    fixed at 1e-5 there, and transformers uses layer_norm_epsilon for both norms: a norm_epsilon other
    than 1e-5 cannot be written, which add_model's config round trip reports."""
    return {
        "architectures": ["Mamba2ForCausalLM"],
        "model_type": "mamba2",
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layer,
        "vocab_size": config.vocab_size,  # padded, as many as the embedding's rows
        "state_size": config.d_state,
        "conv_kernel": config.d_conv,
        "expand": config.expand,
        "num_heads": config.n_heads,
        "head_dim": config.head_dim,
        "n_groups": config.n_groups,
        "chunk_size": config.chunk_size,
        "time_step_limit": [_json_float(limit) for limit in config.dt_limit],
        "layer_norm_epsilon": config.norm_eps,
        "use_bias": config.proj_bias,
        "use_conv_bias": config.conv_bias,
        "tie_word_embeddings": config.tie_embeddings,
        "residual_in_fp32": raw.get("residual_in_fp32", True),
        "hidden_act": "silu",
    }


def _json_float(value):
    """Infinity as transformers writes it ({"__float__": "Infinity"}): JSON has no infinity."""
    return {"__float__": "Infinity"} if value == float("inf") else value


def hf_tensors(tensors, config):
    """{HF key: array}. The original layout's `embedding` becomes `embeddings`. A tied lm_head is
    dropped where both references ignore it (mamba_ssm always ties; transformers ties when it
    equals the embedding), so the file holds one copy of the (v, d) matrix."""
    out = {}
    for key, array in tensors.items():
        out[EMBEDDING_KEY["hf"] if key == EMBEDDING_KEY["original"] else key] = array
    head = out.get(LM_HEAD_KEY)
    if head is not None and config.tie_embeddings and (
        config.layout == "original" or np.array_equal(to_float32(head), to_float32(out[EMBEDDING_KEY["hf"]]))
    ):
        del out[LM_HEAD_KEY]
    return out


def cast(array, dtype, key):
    """Round a float tensor to dtype (round to nearest even, like torch's .to())."""
    x = np.ascontiguousarray(to_float32(array))
    if dtype == "f32":
        out = x
    elif dtype == "f16":
        with np.errstate(over="ignore"):
            out = x.astype("<f2")
    else:  # bf16 is the top half of a float32: add half of the dropped 16 bits' unit, ties to even
        bits = x.view(np.uint32)
        rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
        out = (rounded >> 16).astype("<u2").view(BFLOAT16)
    if not np.isfinite(to_float32(out)).all():
        raise ConversionError(
            f"tensor {key!r}: values up to {np.abs(x).max():.3g} overflow {dtype}; use --dtype "
            f"{'bf16 or f32' if dtype == 'f16' else 'f32'}"
        )
    return out


def write_weights(folder, tensors, shard_size=None):
    """Write {HF key: array} into `folder`: model.safetensors, or, when they exceed shard_size bytes,
    shards of at most that size (a bigger tensor alone) and their index. Returns the file names."""
    groups, size = [[]], 0
    for key, array in tensors.items():
        if shard_size is not None and groups[-1] and size + array.nbytes > shard_size:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += array.nbytes
    if len(groups) == 1:
        with open(os.path.join(folder, SINGLE_FILE), "wb") as file:
            write_safetensors(file, tensors, metadata={"format": "pt"})
        return [SINGLE_FILE]
    shards = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map = {}
    for shard, keys in zip(shards, groups):
        with open(os.path.join(folder, shard), "wb") as file:
            write_safetensors(file, {key: tensors[key] for key in keys}, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, shard))
    index = {"metadata": {"total_size": sum(array.nbytes for array in tensors.values())},
             "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(folder, INDEX_FILE), "w", encoding="utf-8") as file:
        file.write(json.dumps(index, indent=2) + "\n")
    return [INDEX_FILE, *shards]


def parse_size(text):
    """Bytes from '500MB', '2GB', '1.5GiB' or a plain number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]I?B|B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ConversionError(f"shard size {text!r}: expected bytes, or a number with KB, MB, GB (or KiB, MiB, GiB)")
    size = int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "").upper()])
    if size < 1:
        raise ConversionError(f"shard size {text!r}: must be at least 1 byte")
    return size


# ---------------------------------------------------------------------------------------------
# Verifying: the same token ids through the source and the converted model
# ---------------------------------------------------------------------------------------------

def prompt_ids(vocab_size):
    """Fixed, seeded token ids covering the vocabulary (no tokenizer needed)."""
    return np.random.default_rng(0).integers(0, vocab_size, PROMPT_LENGTH).tolist()


def relative_error(logits, reference):
    """max |logits - reference| / max(1, max |reference|), both (l, v)."""
    return float(np.abs(logits - reference).max() / max(1.0, float(np.abs(reference).max())))


def model_from_tensors(config_text, tensors, source):
    """A model from in-memory tensors in any layout, through the same loader as a folder."""
    return load_model_from_files({CONFIG_FILE: config_text, SINGLE_FILE: safetensors_bytes(tensors)}, source)


# ---------------------------------------------------------------------------------------------
# Registering: models/NAME/ and its entry in models/index.json
# ---------------------------------------------------------------------------------------------

def check_name(name, models_dir, force):
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConversionError(
            f"invalid model name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (it becomes the folder models/NAME)"
        )
    target = os.path.join(models_dir, name)
    if os.path.exists(target) and not os.path.isdir(target):
        raise ConversionError(f"{target} exists and is not a folder; choose another --name")
    listed = any(entry.get("name") == name for entry in read_index(models_dir).get("models", []))
    if (listed or os.path.exists(target)) and not force:
        raise ConversionError(
            f"a model named {name!r} already exists in {models_dir}; pass --force to replace it, "
            "or choose a different --name"
        )


def read_index(models_dir):
    path = os.path.join(models_dir, "index.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            index = json.load(file)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(index, dict) or not isinstance(index.get("models", []), list):
        raise ConversionError(f"{path}: expected an object with a 'models' list")
    return index


def register(models_dir, entry):
    """Replace NAME's entry in place, or append it; the first model becomes the default."""
    index = read_index(models_dir)
    models = index.setdefault("models", [])
    for i, existing in enumerate(models):
        if existing.get("name") == entry["name"]:
            models[i] = entry
            break
    else:
        models.append(entry)
    index.setdefault("default", entry["name"])
    _write_index(models_dir, {"default": index.pop("default"), **index})


def remove_model(name, models_dir=DEFAULT_MODELS_DIR, log=print):
    """Delete a model add-model registered: its entry in models/index.json, then its folder."""
    index = read_index(models_dir)
    entries = [entry for entry in index.get("models", []) if entry.get("name") == name]
    if not entries:
        listed = ", ".join(repr(entry.get("name")) for entry in index.get("models", [])) or "none"
        raise ConversionError(f"no model named {name!r} in {os.path.join(models_dir, 'index.json')} (listed: {listed})")
    entry = entries[0]
    if entry.get("added_by") != ADDED_BY:
        raise ConversionError(f"{name!r} was not added by add-model, so it is left alone; edit "
                              f"{os.path.join(models_dir, 'index.json')} by hand to remove it")
    if index.get("default") == name and len(index["models"]) > 1:
        raise ConversionError(f"{name!r} is the site's default model; make another model the \"default\" in "
                              f"{os.path.join(models_dir, 'index.json')} first")
    path = entry.get("path", name)
    if not isinstance(path, str) or not NAME_PATTERN.fullmatch(path):
        raise ConversionError(f"{name!r}: its path {path!r} is not a folder name inside {models_dir}; not removing it")
    index["models"] = [other for other in index["models"] if other is not entry]
    if index.get("default") == name:  # it was the only model
        del index["default"]
    _write_index(models_dir, index)
    shutil.rmtree(os.path.join(models_dir, path), ignore_errors=True)
    log(f"removed {name!r}: {os.path.join(models_dir, path)} and its entry in {os.path.join(models_dir, 'index.json')}")


def _write_index(models_dir, index):
    path = os.path.join(models_dir, "index.json")
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        file.write(json.dumps(index, indent=2, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def _install(staging, target):
    """Move the verified staging folder to models/NAME, replacing an older one only now."""
    if os.path.isdir(target):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old.", dir=os.path.dirname(target))
        os.rename(target, os.path.join(old, "model"))
        os.rename(staging, target)
        shutil.rmtree(old)
    else:
        os.rename(staging, target)


# ---------------------------------------------------------------------------------------------
# The whole conversion
# ---------------------------------------------------------------------------------------------

def add_model(source, models_dir=DEFAULT_MODELS_DIR, name=None, dtype=None, tokenizer=None,
              description=None, force=False, tolerance=None, log=print, shard_size=None):
    """Convert the checkpoint folder `source` into models_dir/NAME, verify it, register it.
    dtype None keeps the source's; shard_size (bytes) splits the weights into files of at most that.
    Returns (index entry, conversion error, rounding error); see the module docstring."""
    if dtype is not None and dtype not in HF_DTYPE_NAMES:
        raise ConversionError(f"unknown dtype {dtype!r}; choose one of {', '.join(HF_DTYPE_NAMES)}")
    if not os.path.isdir(models_dir):
        raise ConversionError(f"{models_dir}: the models folder does not exist")
    source = os.path.normpath(source)
    from_gguf = is_gguf(source) and os.path.isfile(source)
    if name is None:
        name = os.path.basename(os.path.abspath(source))
        name = name[: -len(".gguf")] if from_gguf else name
    check_name(name, models_dir, force)
    files = read_checkpoint(source)
    if tokenizer is None and from_gguf:
        tokenizer_json = tokenizer_json_from_gguf(read_gguf(_read("", source), source))
        tokenizer_bytes = json.dumps(tokenizer_json, ensure_ascii=False).encode("utf-8")
        tokenizer = f"{source} (its tokenizer)"
    else:
        tokenizer = os.path.join(source, TOKENIZER_FILE) if tokenizer is None else tokenizer
        if not os.path.isfile(tokenizer):
            raise ConversionError(
                f"{tokenizer} is missing: the page needs the model's tokenizer.json. Pass --tokenizer FILE, or "
                "download it from the model's hub page (state-spaces/mamba-* models use EleutherAI/gpt-neox-20b's: "
                "https://huggingface.co/EleutherAI/gpt-neox-20b/resolve/main/tokenizer.json)"
            )
        tokenizer_bytes = _read("", tokenizer)
    vocab = Tokenizer.from_json(tokenizer_bytes, tokenizer).vocab_size  # the page's tokenizer must read it

    source_model = load_model_from_files(files, source)  # checks every tensor's name, shape, finiteness
    config = source_model.config
    log(f"read {source}: {config.architecture}, {config.layout} layout, {source_model.n_params:,} parameters")
    if dtype is None:
        # A GGUF file is dequantized to float32 at load: its quantized types have no safetensors dtype
        dtype = "f32" if from_gguf else source_dtype(read_tensors(files, source)[0])
        log(f"writing {dtype}, the source's dtype (--dtype to change it)")
    if vocab > config.vocab_size:
        log(f"warning: {tokenizer} has {vocab} tokens but the model only {config.vocab_size}; "
            "prompts holding the extra ids will be refused")
    out_config = hf_config(json.loads(files[CONFIG_FILE]), config, dtype)
    if config_from_json(json.dumps(out_config)) != replace(config, layout="hf"):
        raise ConversionError(f"{source}/{CONFIG_FILE}: the HF config written would describe another model")
    ids = prompt_ids(config.vocab_size)
    reference = source_model.forward(ids)  # (l, v)
    if from_gguf:  # the HF tensors must give the .gguf file's own model (A_log = log(-A) round trip)
        gguf_error = relative_error(load_model(source).forward(ids), reference)
        if not gguf_error <= CONVERSION_TOLERANCE:
            raise ConversionError(f"{source}: the HF tensors made from it differ by {gguf_error:.2e} (relative); a bug")
    del source_model
    raw, _ = read_tensors(files, source)
    rounded = {key: cast(array, dtype, key) for key, array in raw.items()}
    del raw
    rounded_reference = reference if dtype == "f32" else \
        model_from_tensors(files[CONFIG_FILE], rounded, f"{source} rounded to {dtype}").forward(ids)

    target = os.path.join(models_dir, name)
    staging = tempfile.mkdtemp(prefix=f".{name}.", dir=models_dir)
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; it becomes models/NAME
        with open(os.path.join(staging, CONFIG_FILE), "w", encoding="utf-8") as file:
            file.write(json.dumps(out_config, indent=2) + "\n")
        files_written = [CONFIG_FILE, *write_weights(staging, hf_tensors(rounded, config), shard_size), TOKENIZER_FILE]
        with open(os.path.join(staging, TOKENIZER_FILE), "wb") as file:
            file.write(tokenizer_bytes)
        converted = load_model(staging)
        logits = converted.forward(ids)  # (l, v)
        conversion_error = relative_error(logits, rounded_reference)
        rounding_error = relative_error(logits, reference)
        tolerance = TOLERANCE[dtype] if tolerance is None else tolerance
        log(f"verified on {PROMPT_LENGTH} token ids, max |logit diff| / max(1, max |logit|): "
            f"{conversion_error:.1e} against the source rounded to {dtype} (tolerance {CONVERSION_TOLERANCE:.0e}), "
            f"{rounding_error:.1e} against the source (tolerance {tolerance:.1e})")
        if not conversion_error <= CONVERSION_TOLERANCE:
            raise ConversionError(
                f"the converted files do not reproduce the source: logits differ by {conversion_error:.2e} "
                f"(relative), over {CONVERSION_TOLERANCE:.0e}; this is a bug in the converter. Nothing was registered"
            )
        if not rounding_error <= tolerance:
            raise ConversionError(
                f"rounding to {dtype} moves this model's logits by {rounding_error:.2e} (relative), over the "
                f"tolerance {tolerance:.1e}; use --dtype f32 (exact) or f16 (8x finer than bf16), or accept it "
                "with --tolerance. Nothing was registered"
            )
        size = sum(os.path.getsize(os.path.join(staging, f)) for f in files_written)
        _install(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entry = {
        "name": name,
        "path": name,
        "description": description or f"{os.path.basename(os.path.abspath(source))} converted to {dtype} "
        f"({converted.n_params / 1e6:.2f}M parameters)",
        "files": files_written,
        "size": size,
        "n_params": converted.n_params,
        "dtype": dtype,
        "added_by": ADDED_BY,
    }
    register(models_dir, entry)
    log(f"wrote {target} ({size:,} bytes) and registered {name!r} in {os.path.join(models_dir, 'index.json')}")
    return entry, conversion_error, rounding_error


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="build.py add-model",
        description="Convert a local Mamba checkpoint (HF or state-spaces layout, or llama.cpp .gguf) into models/NAME "
        "and models/index.json, and check that its logits match the source's.",
    )
    parser.add_argument("path", nargs="?", help="checkpoint folder (config.json, weights, tokenizer.json) "
                        "or a .gguf file")
    parser.add_argument("--dtype", choices=list(HF_DTYPE_NAMES),
                        help="dtype of the written weights (f16 halves an f32 download); default: the source's "
                        "(f32 when it mixes dtypes)")
    parser.add_argument("--shard-size", metavar="SIZE", help="write the weights in files of at most SIZE "
                        "(e.g. 500MB, 2GB, 1GiB) with model.safetensors.index.json; default: one file")
    parser.add_argument("--remove", metavar="NAME", help="delete the model NAME that add-model added "
                        "(its folder and its entry in index.json) instead of adding one")
    parser.add_argument("--name", help="folder and index name (default: the checkpoint folder's name)")
    parser.add_argument("--tokenizer", help="tokenizer.json to use (default: PATH/tokenizer.json)")
    parser.add_argument("--description", help="the text the page shows for the model")
    parser.add_argument("--force", action="store_true", help="replace a model of the same name")
    parser.add_argument("--tolerance", type=float, help="largest accepted rounding error "
                        f"(default: {', '.join(f'{k} {v:.1e}' for k, v in TOLERANCE.items())})")
    parser.add_argument("--models-dir", default=DEFAULT_MODELS_DIR, help="default: the site's models/")
    args = parser.parse_args(argv)
    if (args.path is None) == (args.remove is None):
        parser.error("give a checkpoint folder PATH to add, or --remove NAME")
    def log(message):
        print(f"[add-model] {message}", flush=True)

    try:
        if args.remove is not None:
            remove_model(args.remove, args.models_dir, log=log)
            return 0
        shard_size = None if args.shard_size is None else parse_size(args.shard_size)
        add_model(args.path, args.models_dir, args.name, args.dtype, args.tokenizer, args.description,
                  args.force, args.tolerance, log=log, shard_size=shard_size)
    except MambaWasmError as exc:
        print(f"add-model: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
