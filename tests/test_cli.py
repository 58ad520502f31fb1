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
