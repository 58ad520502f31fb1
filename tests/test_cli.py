"""`python -m mamba_wasm generate` streams what the library generates, and fails readably."""

import subprocess
import sys
from pathlib import Path

import mamba_wasm

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models" / "tiny-random"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mamba_wasm", "generate", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_prints_the_same_text_as_the_library():
    done = cli(str(MODEL_DIR), "--prompt", "To be", "--max-new-tokens", "15", "--temperature", "0.7", "--seed", "4")
    assert done.returncode == 0, done.stderr
    model = mamba_wasm.load_model(MODEL_DIR)
    tokenizer = mamba_wasm.Tokenizer.from_file(MODEL_DIR / "tokenizer.json")
    expected = "".join(mamba_wasm.generate(model, tokenizer, "To be", 15, temperature=0.7, seed=4))
    assert done.stdout == expected + "\n"


def test_cli_reports_a_missing_model_folder_without_a_traceback(tmp_path):
    done = cli(str(tmp_path / "nowhere"), "--prompt", "x")
    assert done.returncode == 2
    assert "nowhere" in done.stderr and "Traceback" not in done.stderr


def test_cli_refuses_bad_parameters():
    done = cli(str(MODEL_DIR), "--prompt", "x", "--top-p", "2")
    assert done.returncode == 2 and "top_p" in done.stderr


def test_cli_generates_from_a_mamba2_checkpoint_as_transformers_does(tmp_path):
    """A Mamba-2 saved by transformers' Mamba2ForCausalLM.save_pretrained (as a trained demo model
    is exported), with the page's tokenizer: greedy CLI text is HF's greedy continuation."""
    import shutil

    import torch
    from transformers import Mamba2Config, Mamba2ForCausalLM

    tokenizer = mamba_wasm.Tokenizer.from_file(MODEL_DIR / "tokenizer.json")
    torch.manual_seed(0)
    config = Mamba2Config(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_heads=8,
                          head_dim=8, state_size=16, n_groups=2, chunk_size=8, tie_word_embeddings=True)
    hf = Mamba2ForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    shutil.copy(MODEL_DIR / "tokenizer.json", tmp_path / "tokenizer.json")
    prompt_ids = tokenizer.encode("To be, or not")
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=12, min_new_tokens=12,
                          eos_token_id=None, pad_token_id=None)
    done = cli(str(tmp_path), "--prompt", "To be, or not", "--max-new-tokens", "12", "--temperature", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout == tokenizer.decode(out[0, len(prompt_ids):].tolist()) + "\n"
