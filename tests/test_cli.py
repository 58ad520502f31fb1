"""`mamba-wasm generate` (= `python -m mamba_wasm generate`): streams what the library generates,
reads the prompt from an option, a file or stdin, documents every default, and fails readably."""

import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import mamba_wasm
from mamba_wasm import __main__ as cli_module

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models" / "tiny-random"


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "mamba_wasm", "generate", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, input=stdin)


def run(capsys, *args, stdin=None, monkeypatch=None):
    """The command in this process: (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = cli_module.main(["generate", *map(str, args)])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def library_text(prompt, n, **sampling):
    model, tokenizer = mamba_wasm.from_pretrained(MODEL_DIR)
    return "".join(mamba_wasm.generate(model, tokenizer, prompt, n, **sampling))


def test_cli_prints_the_prompt_and_the_same_text_as_the_library():
    done = cli(MODEL_DIR, "--prompt", "To be", "--max-new-tokens", "15", "--temperature", "0.7", "--seed", "4")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "To be" + library_text("To be", 15, temperature=0.7, seed=4) + "\n"


def test_no_echo_prints_only_the_continuation(capsys):
    code, out, _ = run(capsys, MODEL_DIR, "--prompt", "To be", "--max-new-tokens", "9", "--seed", "2", "--no-echo")
    assert code == 0 and out == library_text("To be", 9, seed=2) + "\n"


def test_the_prompt_comes_from_a_file_or_stdin_alike(capsys, monkeypatch, tmp_path):
    prompt = "ROMEO.\nWhat, ho! é"
    (tmp_path / "prompt.txt").write_text(prompt, encoding="utf-8")
    common = [MODEL_DIR, "--max-new-tokens", "8", "--seed", "5"]
    by_option = run(capsys, *common, "--prompt", prompt)
    by_file = run(capsys, *common, "--prompt-file", tmp_path / "prompt.txt")
    by_stdin = run(capsys, *common, "--prompt", "-", stdin=prompt, monkeypatch=monkeypatch)
    assert by_option[0] == 0 and by_option == by_file == by_stdin
    assert by_option[1].startswith(prompt)


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli_module.main(["generate", "--help"])
    text = capsys.readouterr().out
    for option, default in [("--max-new-tokens", "200"), ("--temperature", "0.8"), ("--top-k", "0"),
                            ("--top-p", "1.0"), ("--repetition-penalty", "1.0"), ("--seed", "a fresh random seed"),
                            ("--echo", "--echo"), ("--stats", "off")]:
        entry = re.search(rf"\n  {re.escape(option)}\b.*?(?=\n  -|\n\n)", text, re.S)
        assert entry, option
        assert f"(default: {default}" in " ".join(entry.group(0).split()), option
    assert "--prompt-file PATH" in text and "- reads it from stdin" in text


@pytest.mark.parametrize("option,value,message", [
    ("--temperature", "inf", "argument --temperature: expected a finite number, got 'inf'"),
    ("--temperature", "nan", "expected a finite number, got 'nan'"),
    ("--top-p", "nan", "argument --top-p: expected a finite number"),
    ("--repetition-penalty", "-inf", "expected a finite number"),
    ("--top-p", "2", r"argument --top-p: expected a number in (0, 1], got 2.0"),
    ("--temperature", "-1", "argument --temperature: expected a number >= 0, got -1.0"),
    ("--max-new-tokens", "0", "argument --max-new-tokens: expected a whole number >= 1, got 0"),
    ("--top-k", "2.5", "argument --top-k: expected a whole number, got '2.5'"),
    ("--seed", "-3", "argument --seed: expected a whole number >= 0, got '-3'"),
])
def test_bad_values_are_refused_naming_the_option(capsys, option, value, message):
    code, out, err = run(capsys, MODEL_DIR, "--prompt", "x", f"{option}={value}")
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_errors_are_worded_for_a_terminal(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, MODEL_DIR, "--prompt", "")
    assert code == 2
    assert err == ("mamba-wasm: error: the prompt is empty: give some text with --prompt TEXT, "
                   "--prompt - (stdin) or --prompt-file PATH\n")
    code, _, err = run(capsys, MODEL_DIR, "--prompt", "-", stdin="", monkeypatch=monkeypatch)
    assert code == 2 and "the prompt is empty" in err
    code, _, err = run(capsys, MODEL_DIR, "--prompt-file", tmp_path / "missing.txt")
    assert code == 2 and err == f"mamba-wasm: error: cannot read the prompt file {tmp_path / 'missing.txt'}: No such file or directory\n"
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    code, _, err = run(capsys, MODEL_DIR, "--prompt-file", tmp_path / "latin1.txt")
    assert code == 2 and "is not UTF-8 text" in err
    code, _, err = run(capsys, MODEL_DIR, "--prompt", "x", "--prompt-file", tmp_path / "latin1.txt")
    assert code == 2 and "not allowed with argument" in err


def test_cli_reports_a_missing_model_folder_without_a_traceback(tmp_path):
    done = cli(tmp_path / "nowhere", "--prompt", "x")
    assert done.returncode == 2
    assert "nowhere" in done.stderr and "Traceback" not in done.stderr


def test_the_readme_sample_is_what_its_printed_command_prints():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"exactly what this command prints.*?```sh\n(mamba-wasm generate [^\n]+)\n```\n```\n(.*?)```",
                      readme, re.S)
    assert found, "README: the sample and its command"
    command, sample = shlex.split(found.group(1)), found.group(2)
    assert command[:3] == ["mamba-wasm", "generate", "models/shakespeare"]
    done = subprocess.run([sys.executable, "-m", "mamba_wasm", *command[1:]], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == sample


def test_cli_refuses_bad_parameters():
    done = cli(str(MODEL_DIR), "--prompt", "x", "--top-p", "2")
    assert done.returncode == 2 and "--top-p" in done.stderr


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
    done = cli(str(tmp_path), "--prompt", "To be, or not", "--max-new-tokens", "12", "--temperature", "0", "--no-echo")
    assert done.returncode == 0, done.stderr
    assert done.stdout == tokenizer.decode(out[0, len(prompt_ids):].tolist()) + "\n"
