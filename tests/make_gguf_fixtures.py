"""Write the GGUF fixtures: parity fixtures converted by llama.cpp's own converter, at each type.

    python3 tests/make_gguf_fixtures.py   # needs torch, transformers, gguf (requirements-test.txt), PyPI

llama.cpp's converter is not on PyPI by itself: convert_hf_to_gguf.py, its conversion/ package,
gguf-py and the built-in vocabularies are taken from the llama-cpp-python sdist (LLAMA_CPP_PYTHON,
fetched with `pip download`, unpacked into CACHE; nothing is compiled). Into tests/fixtures/gguf/:

    <case>-<TYPE>.gguf   tests/fixtures/models/<case> through convert_hf_to_gguf.py --outtype f32 /
                         f16 / bf16 / q8_0 (it puts 1-D tensors, norms, ssm_a/ssm_d and the conv
                         weights in F32 and falls back to F16 for rows that are not whole blocks).
                         Q4_0 and the K-quants come from llama.cpp's C++ llama-quantize, which we do
                         not build: those files are the converter's F32 file with each matrix
                         quantized here instead (Q4_0 by gguf.quants, Q4_K/Q6_K by quantize_q4_k /
                         quantize_q6_k below: simple min/max scales, any valid block decodes the same)
    kquant-Q4_K_M.gguf   a random 256-wide model (K-quant blocks are 256 numbers, so the parity
                         fixtures are too narrow), mixed as llama.cpp's Q4_K_M: Q6_K embedding,
                         Q4_K matrices; kquant-expected.npz holds HF transformers' float32 logits
    tokenizer.gguf       tests/fixtures/tokenizer/tokenizer.json converted with --vocab-only

Differences from a plain converter run, each forced by the fixtures:
  - The fixtures have no tokenizer.json, so the converter writes its built-in GPT-NeoX vocabulary cut
    to the model's size but with all its 50k merges (800 KB), of which none can apply; only the first
    MERGES_KEPT are kept, so that the files stay small (a reader must still skip those it cannot use).
  - time_step_rank "auto" in config.json (hf_tied_bias) is written as its number: the converter
    would store the string "auto" as an integer and fail.
  - original_layout's ssm_cfg: "layer": "Mamba1" is left out, its default (the converter names the
    architecture "<layer>ForCausalLM" and has no "Mamba1ForCausalLM"), and d_state, d_conv, expand
    are copied to the top level, where alone the converter looks (else it writes d_state 16 beside
    tensors made for 8: a file llama.cpp and we refuse).
  - The tokenizer fixture is not a tokenizer the converter's hash table knows, so its pre-tokenizer
    is named "mpt", the name the converter gives GPT-NeoX's (and its built-in vocabulary's).
  - hf_untied_nobias (expand 1) is left out: the converter asserts d_inner == 2 * d_model.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "fixtures", "models")
OUT = os.path.join(HERE, "fixtures", "gguf")
TOKENIZER = os.path.join(HERE, "fixtures", "tokenizer", "tokenizer.json")
LLAMA_CPP_PYTHON = "0.3.36"
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "mamba-wasm", f"llama-cpp-python-{LLAMA_CPP_PYTHON}")
LLAMA = os.path.join(CACHE, "vendor", "llama.cpp")

# case -> the types it is written at ("auto": what the converter picks for the file's own dtype)
CASES = {
    "hf_tied_bias": ["F32", "Q8_0", "Q4_0"],
    "hf_untied_k3": ["F32"],
    "original_layout": ["F16"],
    "f16_sharded": ["F16"],
    "bf16": ["BF16"],
    "mamba2_hf_groups_bias": ["F32"],
    "mamba2_hf_untied": ["Q8_0"],
}
MERGES_KEPT = 64
CONVERTER_TYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16", "Q8_0": "q8_0"}
KQUANT = dict(vocab_size=64, hidden_size=256, state_size=8, expand=2, conv_kernel=4, use_bias=False,
              tie_word_embeddings=True, num_hidden_layers=1)

# Runs the converter once per job (a JSON list of argument lists) in one process, so that torch
# and transformers are imported once; with the sdist's own gguf-py first on the path; naming the
# pre-tokenizer of a tokenizer whose hash it does not know (see the module docstring).
CONVERT = """
import json, runpy, sys
llama, jobs = sys.argv[1], json.loads(sys.argv[2])
sys.path[0] = llama
sys.path.insert(1, llama + "/gguf-py")
from conversion.base import TextModel
detect = TextModel.get_vocab_base_pre
def get_vocab_base_pre(self, tokenizer):
    try:
        return detect(self, tokenizer)
    except NotImplementedError:
        return "mpt"
TextModel.get_vocab_base_pre = get_vocab_base_pre
for job in jobs:
    sys.argv = [llama + "/convert_hf_to_gguf.py", *job]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def fetch_converter():
    if os.path.isfile(os.path.join(LLAMA, "convert_hf_to_gguf.py")):
        return
    download = tempfile.mkdtemp()
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                    f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", download], check=True)
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
    wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "models/ggml-vocab-gpt-neox.gguf")
    with tarfile.open(os.path.join(download, f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz")) as sdist:
        members = [m for m in sdist.getmembers() if m.name.startswith(prefix)
                   and m.name[len(prefix):].startswith(wanted) and (m.isfile() or m.isdir())]
        for member in members:
            member.name = os.path.join("vendor", "llama.cpp", member.name[len(prefix):])
        sdist.extractall(CACHE, members=members, filter="data")
    shutil.rmtree(download)


def convert(jobs):
    """Run convert_hf_to_gguf.py on each (folder, outtype, outfile, *extra arguments)."""
    arguments = [[folder, "--outtype", outtype, "--outfile", outfile, *extra] for folder, outtype, outfile, *extra in jobs]
    subprocess.run([sys.executable, "-c", CONVERT, LLAMA, json.dumps(arguments)], check=True, capture_output=True)


def model_folder(case, workdir):
    """A copy of the fixture's checkpoint whose config.json the converter can read."""
    folder = os.path.join(workdir, case)
    shutil.copytree(os.path.join(MODELS, case), folder, ignore=shutil.ignore_patterns("expected.npz"))
    path = os.path.join(folder, "config.json")
    with open(path) as file:
        config = json.load(file)
    if config.get("time_step_rank") == "auto":
        config["time_step_rank"] = math.ceil(config["hidden_size"] / 16)
    if config.get("ssm_cfg", {}).get("layer") == "Mamba1":
        del config["ssm_cfg"]["layer"]  # the default; the converter looks for "Mamba1ForCausalLM"
    for key, value in config.get("ssm_cfg", {}).items():
        config.setdefault(key, value)  # the converter looks for d_state and d_conv at the top level only
    with open(path, "w") as file:
        json.dump(config, file)
    return folder


# ---------------------------------------------------------------------------------------------
# Quantizers for the types the Python converter cannot write (layouts: mamba_wasm/gguf_quants.py)
# ---------------------------------------------------------------------------------------------

def _f16_bytes(values):
    return values.astype("<f2").view(np.uint8).reshape(len(values), 2)


def quantize_q4_k(rows):
    """(..., 256 k) float32 -> (blocks, 144) uint8: per sub-block of 32, q = round((x - min) / scale)."""
    x = rows.reshape(-1, 8, 32).astype(np.float32)
    low = np.minimum(x.min(axis=2), 0)  # (blocks, 8)
    scale = (x.max(axis=2) - low) / 15
    d = (scale.max(axis=1) / 63).astype(np.float16).astype(np.float32)  # (blocks,)
    dmin = (-low.min(axis=1) / 63).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.nan_to_num(np.clip(np.rint(scale / d[:, None]), 0, 63)).astype(np.uint8)
        m = np.nan_to_num(np.clip(np.rint(-low / dmin[:, None]), 0, 63)).astype(np.uint8)
        step = (d[:, None] * sc)[:, :, None]
        q = np.nan_to_num(np.clip(np.rint((x + (dmin[:, None] * m)[:, :, None]) / step), 0, 15)).astype(np.uint8)
    scales = np.concatenate([
        (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6),
        (m[:, :4] & 63) | ((m[:, 4:] >> 4) << 6),
        (sc[:, 4:] & 15) | ((m[:, 4:] & 15) << 4),
    ], axis=1)
    pairs = q.reshape(-1, 4, 2, 32)
    qs = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), scales, qs], axis=1)


def quantize_q6_k(rows):
    """(..., 256 k) float32 -> (blocks, 210) uint8: per sub-block of 16, q = round(x / scale) in [-32, 31]."""
    x = rows.reshape(-1, 16, 16).astype(np.float32)
    scale = np.abs(x).max(axis=2) / 31  # (blocks, 16)
    d = (scale.max(axis=1) / 127).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.nan_to_num(np.clip(np.rint(scale / d[:, None]), -128, 127)).astype(np.int8)
        step = (d[:, None] * sc)[:, :, None]
        q = (np.nan_to_num(np.clip(np.rint(x / step), -32, 31)) + 32).astype(np.uint8).reshape(-1, 2, 128)
    ql = (q[:, :, :64] & 15) | ((q[:, :, 64:] & 15) << 4)  # (blocks, half, 64)
    quarters = (q >> 4).reshape(-1, 2, 4, 32)
    qh = quarters[:, :, 0] | (quarters[:, :, 1] << 2) | (quarters[:, :, 2] << 4) | (quarters[:, :, 3] << 6)
    return np.concatenate([ql.reshape(-1, 128), qh.reshape(-1, 64), sc.view(np.uint8), _f16_bytes(d)], axis=1)


def quantize(array, type_name):
    """(type name, bytes) for a float32 matrix; rows that are not whole blocks fall back to F16, as
    the converter does."""
    qtype = gguf.GGMLQuantizationType[type_name]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if array.shape[-1] % block:
        return "F16", array.astype(np.float16)
    if type_name == "Q4_0":
        return type_name, gguf.quants.quantize(array, qtype)
    blocks = {"Q4_K": quantize_q4_k, "Q6_K": quantize_q6_k}[type_name](array)
    return type_name, blocks.reshape(*array.shape[:-1], -1)


# ---------------------------------------------------------------------------------------------
# Rewriting a converter's file: fewer merges, and matrices requantized
# ---------------------------------------------------------------------------------------------

def rewrite(path, out, types=None):
    """Copy the GGUF at `path` to `out` with its first MERGES_KEPT merges; with `types` (tensor
    name -> type name), requantize those F32 matrices."""
    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        if key == "tokenizer.ggml.merges":
            value = value[:MERGES_KEPT]
        if key == "general.file_type" and types:
            value = {"Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "Q4_K": gguf.LlamaFileType.MOSTLY_Q4_K_M}[
                "Q4_K" if "Q4_K" in types.values() else "Q4_0"]
        sub_type = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(key, value, field.types[0], sub_type=sub_type)
    for tensor in reader.tensors:
        data, qtype = np.array(tensor.data), tensor.tensor_type
        if types and tensor.name in types:
            assert qtype == gguf.GGMLQuantizationType.F32, tensor.name
            name, data = quantize(data, types[tensor.name])
            qtype = gguf.GGMLQuantizationType[name]
        writer.add_tensor(tensor.name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def matrices(path):
    """Names of the tensors llama.cpp's quantizer quantizes: 2-D weights except the conv kernels."""
    return [t.name for t in gguf.GGUFReader(path).tensors
            if len(t.shape) == 2 and t.name.endswith(".weight") and "ssm_conv1d" not in t.name]


# ---------------------------------------------------------------------------------------------
# The fixtures
# ---------------------------------------------------------------------------------------------

def case_jobs(case, types, workdir):
    """Converter jobs for one case, and what to do with each output: (raw file, final file, types)."""
    folder = model_folder(case, workdir)
    jobs, finish = [], []
    for type_name in types:
        raw = os.path.join(workdir, f"{case}-{type_name}.raw.gguf")
        jobs.append((folder, CONVERTER_TYPES.get(type_name, "f32"), raw))
        finish.append((raw, os.path.join(OUT, f"{case}-{type_name}.gguf"), None if type_name in CONVERTER_TYPES else type_name))
    return jobs, finish


def kquant_job(workdir):
    """A 256-wide random model (saved for the converter) and HF's float32 logits for it."""
    import torch
    from transformers import MambaConfig, MambaForCausalLM

    sys.path.insert(0, HERE)
    from make_model_fixtures import PROMPT_LEN, randomize, reference

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = MambaForCausalLM(MambaConfig(**KQUANT)).eval()
    randomize(model, generator)
    prompt = torch.randint(0, KQUANT["vocab_size"], (PROMPT_LEN,), generator=generator).tolist()
    logits, _, _ = reference(model, prompt)
    folder = os.path.join(workdir, "kquant")
    model.save_pretrained(folder)
    np.savez(os.path.join(OUT, "kquant-expected.npz"), prompt_ids=np.array(prompt, np.int64),
             logits=logits.astype(np.float32))
    return (folder, "f32", os.path.join(workdir, "kquant.raw.gguf"))


def tokenizer_job(workdir):
    """A folder with the tokenizer fixture and a config.json whose vocabulary covers it."""
    folder = os.path.join(workdir, "tokenizer")
    os.makedirs(folder)
    shutil.copyfile(TOKENIZER, os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(MODELS, "hf_tied_bias", "config.json")) as file:
        config = json.load(file)
    with open(TOKENIZER) as file:
        spec = json.load(file)
    ids = list(spec["model"]["vocab"].values()) + [t["id"] for t in spec["added_tokens"]]
    config.update(vocab_size=max(ids) + 1, time_step_rank=2)
    with open(os.path.join(folder, "config.json"), "w") as file:
        json.dump(config, file)
    return (folder, "f32", os.path.join(OUT, "tokenizer.gguf"), "--vocab-only")


def main():
    fetch_converter()
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    with tempfile.TemporaryDirectory() as workdir:
        jobs, finish = [], []
        for case, types in CASES.items():
            more_jobs, more_finish = case_jobs(case, types, workdir)
            jobs += more_jobs
            finish += more_finish
        kquant = kquant_job(workdir)
        jobs += [kquant, tokenizer_job(workdir)]
        convert(jobs)
        for raw, out, type_name in finish:
            rewrite(raw, out, type_name and dict.fromkeys(matrices(raw), type_name))
        raw = kquant[2]
        rewrite(raw, os.path.join(OUT, "kquant-Q4_K_M.gguf"),
                {name: "Q6_K" if name == "token_embd.weight" else "Q4_K" for name in matrices(raw)})
    for name in sorted(os.listdir(OUT)):
        print(f"{name:28} {os.path.getsize(os.path.join(OUT, name)) / 1024:6.1f} KiB")


if __name__ == "__main__":
    main()
