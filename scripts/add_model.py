#!/usr/bin/env python3
"""Convert a local Mamba checkpoint into the site's models/ folder, then check its logits.

    python3 build.py add-model PATH [--dtype f32|f16|bf16] [--name NAME] [--tokenizer FILE]
                                    [--description TEXT] [--force] [--tolerance X] [--models-dir DIR]

build.py runs this file with a Python that has NumPy; torch is needed only for pytorch_model.bin.

Input, the folder PATH, in either layout mamba_wasm reads (the key mapping is in mamba_wasm/config.py):
    config.json         transformers' MambaConfig keys (hidden_size, ...) or state-spaces/mamba's
                        (d_model, n_layer, ssm_cfg, ...)
    model.safetensors   or model.safetensors.index.json with its shards, or pytorch_model.bin (or
                        pytorch_model.bin.index.json with its shards), read by torch.load(weights_only=True)
    tokenizer.json      the HF `tokenizers` file the page tokenizes with (or --tokenizer FILE)
or PATH is one llama.cpp .gguf file (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), read by mamba_wasm's
GGUF loader: its tensors dequantized to float32 (ssm_a's A = -exp(A_log) written back as A_log), its
metadata as an HF config.json, and its tokenizer as tokenizer.json unless --tokenizer is given.
Output, models/NAME/ in transformers' layout, which both the page and
MambaForCausalLM.from_pretrained load:
    config.json         HF keys; an original checkpoint's padded vocabulary (50277 -> 50280) is kept
    model.safetensors   every tensor at --dtype: f32 (default, lossless from f32), f16 (half the
                        download) or bf16; written by the NumPy writer below (no safetensors library)
    tokenizer.json      copied
and NAME's entry in models/index.json (appended, or replaced in place with --force).

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
import io
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
from mamba_wasm.safetensors import BFLOAT16, DTYPE_NAMES, to_float32  # noqa: E402

BIN_FILE = "pytorch_model.bin"
BIN_INDEX_FILE = "pytorch_model.bin.index.json"
TOKENIZER_FILE = "tokenizer.json"
OUTPUT_FILES = [CONFIG_FILE, SINGLE_FILE, TOKENIZER_FILE]
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
    buffer = io.BytesIO()
    write_safetensors(buffer, _read_pytorch_bin(folder))
    files[SINGLE_FILE] = buffer.getvalue()
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

def hf_config(raw, config, dtype):
    """config.json for transformers' MambaConfig. An HF source keeps all its keys."""
    if config.layout == "hf":
        out = dict(raw)
        out.pop("torch_dtype", None)  # transformers 4.x's name for "dtype"
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


# ---------------------------------------------------------------------------------------------
# Writing a .safetensors file (format: see mamba_wasm/safetensors.py, which reads it back)
# ---------------------------------------------------------------------------------------------

def write_safetensors(file, tensors, metadata=None):
    """Write {name: array} (F32, F16 or BF16) to the binary file object `file`, as the
    `safetensors` library does: wider dtypes first, then by name, with no gaps, so that each
    tensor starts at a multiple of its itemsize; the header is padded with spaces to 8 bytes."""
    order = sorted(tensors, key=lambda name: (-tensors[name].dtype.itemsize, name))
    header, offset = {"__metadata__": metadata or {"format": "pt"}}, 0
    for name in order:
        array = tensors[name]
        dtype = DTYPE_NAMES.get(array.dtype)
        if dtype not in ("F32", "F16", "BF16"):
            raise ConversionError(f"tensor {name!r}: dtype {array.dtype} cannot be written (F32, F16, BF16)")
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    file.write(len(encoded).to_bytes(8, "little"))
    file.write(encoded)
    for name in order:
        file.write(np.ascontiguousarray(tensors[name]).data)


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
    buffer = io.BytesIO()
    write_safetensors(buffer, tensors)
    return load_model_from_files({CONFIG_FILE: config_text, SINGLE_FILE: buffer.getvalue()}, source)


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
    index = {"default": index.pop("default"), **index}
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

def add_model(source, models_dir=DEFAULT_MODELS_DIR, name=None, dtype="f32", tokenizer=None,
              description=None, force=False, tolerance=None, log=print):
    """Convert the checkpoint folder `source` into models_dir/NAME, verify it, register it.
    Returns (index entry, conversion error, rounding error); see the module docstring."""
    if dtype not in HF_DTYPE_NAMES:
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
    log(f"read {source}: {config.layout} layout, {source_model.n_params:,} parameters")
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
        with open(os.path.join(staging, SINGLE_FILE), "wb") as file:
            write_safetensors(file, hf_tensors(rounded, config))
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
        size = sum(os.path.getsize(os.path.join(staging, f)) for f in OUTPUT_FILES)
        _install(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entry = {
        "name": name,
        "path": name,
        "description": description or f"{os.path.basename(os.path.abspath(source))} converted to {dtype} "
        f"({converted.n_params / 1e6:.2f}M parameters)",
        "files": OUTPUT_FILES,
        "size": size,
        "n_params": converted.n_params,
        "dtype": dtype,
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
    parser.add_argument("path", help="checkpoint folder (config.json, weights, tokenizer.json) or a .gguf file")
    parser.add_argument("--dtype", choices=list(HF_DTYPE_NAMES), default="f32",
                        help="dtype of the written weights (f16 halves the download); default f32")
    parser.add_argument("--name", help="folder and index name (default: the checkpoint folder's name)")
    parser.add_argument("--tokenizer", help="tokenizer.json to use (default: PATH/tokenizer.json)")
    parser.add_argument("--description", help="the text the page shows for the model")
    parser.add_argument("--force", action="store_true", help="replace a model of the same name")
    parser.add_argument("--tolerance", type=float, help="largest accepted rounding error "
                        f"(default: {', '.join(f'{k} {v:.1e}' for k, v in TOLERANCE.items())})")
    parser.add_argument("--models-dir", default=DEFAULT_MODELS_DIR, help="default: the site's models/")
    args = parser.parse_args(argv)
    try:
        add_model(args.path, args.models_dir, args.name, args.dtype, args.tokenizer, args.description,
                  args.force, args.tolerance, log=lambda message: print(f"[add-model] {message}", flush=True))
    except MambaWasmError as exc:
        print(f"add-model: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
