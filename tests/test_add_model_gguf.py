"""`build.py add-model FILE.gguf`: a llama.cpp file converted to the site's HF layout, checked, registered.

The converted folder must reproduce the .gguf model (dequantized to float32) within add_model's
CONVERSION_TOLERANCE (the A_log = log(-A) round trip costs about one float32 ulp of A), be read by
HF transformers alike (1e-4, test_parity.py's bound), and carry a tokenizer.json that HF
`tokenizers` reads.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tokenizers
import torch
from transformers import MambaForCausalLM

from mamba_wasm import Tokenizer, load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import add_model  # noqa: E402

GGUF_DIR = os.path.join(ROOT, "tests", "fixtures", "gguf")


def relative_error(ours, reference):
    return np.abs(ours - reference).max() / max(1.0, np.abs(reference).max())


@pytest.mark.parametrize("name", ["hf_tied_bias-Q8_0.gguf", "hf_untied_k3-F32.gguf", "kquant-Q4_K_M.gguf"])
def test_gguf_file_is_converted_and_registered(tmp_path, name):
    source = os.path.join(GGUF_DIR, name)
    entry, conversion_error, _ = add_model.add_model(source, str(tmp_path), log=lambda message: None)
    assert entry["name"] == name[: -len(".gguf")] and conversion_error <= add_model.CONVERSION_TOLERANCE
    folder = tmp_path / entry["name"]
    ids = add_model.prompt_ids(load_model(source).config.vocab_size)
    assert relative_error(load_model(str(folder)).forward(ids), load_model(source).forward(ids)) <= 1e-5
    with torch.no_grad():
        hf = MambaForCausalLM.from_pretrained(str(folder)).eval()(torch.tensor([ids])).logits[0].numpy()
    assert relative_error(load_model(str(folder)).forward(ids), hf) <= 1e-4
    tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
    assert tokenizer.encode("<|endoftext|>") == [0]
    assert json.loads((tmp_path / "index.json").read_text())["models"][0]["name"] == entry["name"]


def test_tokenizer_json_written_from_a_gguf_reads_in_hf_tokenizers(tmp_path):
    expected = json.loads(open(os.path.join(ROOT, "tests", "fixtures", "tokenizer", "expected.json"), encoding="utf-8").read())
    spec = add_model.tokenizer_json_from_gguf(add_model.read_gguf(open(os.path.join(GGUF_DIR, "tokenizer.gguf"), "rb").read()))
    hf = tokenizers.Tokenizer.from_str(json.dumps(spec))
    assert [hf.encode(text).ids for text in expected["texts"]] == expected["encode"]["tokenizer.json"]


def test_build_py_add_model_takes_a_gguf_file(tmp_path):
    (tmp_path / "index.json").write_text('{"models": []}')
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "build.py"), "add-model", os.path.join(GGUF_DIR, "bf16-BF16.gguf"),
         "--name", "from-gguf", "--dtype", "bf16", "--models-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "registered 'from-gguf'" in result.stdout
    assert load_model(str(tmp_path / "from-gguf")).config.vocab_size == 64


def test_a_mamba2_file_is_refused_by_name(tmp_path):
    with pytest.raises(add_model.ConversionError, match="a Mamba-2 file; add-model converts Mamba-1 .gguf files only"):
        add_model.add_model(os.path.join(GGUF_DIR, "mamba2_hf_untied-Q8_0.gguf"), str(tmp_path), log=lambda message: None)
