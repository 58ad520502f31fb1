"""scripts/train_demo_model.py on a tiny configuration: help without torch, Ctrl+C saves a checkpoint
and the same command resumes it to the same weights, exported files readable by all, any text files,
one checkpoint per configuration."""

import hashlib
import os
import re
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "train_demo_model.py")
TINY = ["--arch", "mamba2", "--d-model", "32", "--layers", "1", "--d-state", "8", "--head-dim", "16",
        "--chunk", "16", "--vocab", "300", "--batch", "2", "--seq", "32", "--warmup", "5",
        "--eval-every", "40", "--eval-windows", "1", "--sample-tokens", "8", "--threads", "1"]
EXPORTED = ["config.json", "model.safetensors", "tokenizer.json", "MODEL_CARD.md", "loss_curve.png"]


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """Two training files and a held-out one: not Shakespeare, not the default data."""
    d = tmp_path_factory.mktemp("texts")
    lines = [f"The {a} {b} of the {c} went {d} at dawn.\n" for a in ("old", "red", "wise", "tall")
             for b in ("fox", "ship", "queen", "clock") for c in ("hill", "sea", "town") for d in ("home", "north")]
    paths = []
    for i, name in enumerate(("alpha.txt", "beta.txt", "gamma.txt")):
        p = d / name
        p.write_text("".join(lines[i::3] * 4), encoding="utf-8")
        paths.append(str(p))
    return paths


def train_cmd(texts, cache, steps, *extra):
    return [sys.executable, SCRIPT, *TINY, "--text", *texts[:2], "--held-out", texts[2],
            "--cache", str(cache), "--steps", str(steps), *extra]


def run(cmd, **kw):
    env = dict(os.environ, COLUMNS="200")  # argparse wraps help at the terminal's width
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, **kw)


def run_dirs(cache):
    return sorted(os.listdir(os.path.join(cache, "train")))


def test_help_without_torch_shows_defaults_interpreter_and_gcc():
    # torch made unimportable: --help must still work, and must not import it
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['train_demo_model.py', '--help']; "
            f"runpy.run_path({SCRIPT!r}, run_name='__main__')")
    r = run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert "--arch {mamba1,mamba2}" in r.stdout
    assert "(default: mamba1)" in r.stdout and "(default: 3000)" in r.stdout
    assert ".venv/bin/python" in r.stdout and "gcc" in r.stdout


def test_without_torch_a_training_run_says_which_interpreter():
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['train_demo_model.py']; "
            f"runpy.run_path({SCRIPT!r}, run_name='__main__')")
    r = run([sys.executable, "-c", code])
    assert r.returncode == 1
    assert "torch is not installed" in r.stderr and ".venv/bin/python" in r.stderr
    assert "Traceback" not in r.stderr


def test_ctrl_c_saves_and_the_same_command_resumes_to_the_same_weights(texts, tmp_path):
    import torch
    cache = tmp_path / "cache"
    cmd = train_cmd(texts, cache, 60, "--log-every", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # interrupt once a few steps have run
        seen.append(line)
        if re.search(r"step 3/60", line):
            proc.send_signal(signal.SIGINT)
            break
    out = "".join(seen) + proc.stdout.read()
    assert proc.wait(timeout=900) == 128 + signal.SIGINT, out
    assert "Traceback" not in out
    (run_dir,) = run_dirs(cache)
    ckpt = cache / "train" / run_dir / "ckpt.pt"
    saved = torch.load(ckpt, weights_only=False)
    stopped_at = saved["state"]["step"]
    assert 3 <= stopped_at < 60
    assert f"saved {ckpt} at step {stopped_at}/60" in out
    assert not (cache / "train" / run_dir / "model").exists()

    r = run(cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resumed from {ckpt} at step {stopped_at}" in r.stdout
    assert "sample: " in r.stdout  # nanoGPT-style samples while training
    assert torch.load(ckpt, weights_only=False)["state"]["step"] == 60
    resumed = cache / "train" / run_dir / "model" / "model.safetensors"

    straight = tmp_path / "straight"
    r = run(train_cmd(texts, straight, 60))
    assert r.returncode == 0, r.stdout + r.stderr
    assert run_dirs(straight) == [run_dir]  # same configuration, same key
    with open(resumed, "rb") as a, open(straight / "train" / run_dir / "model" / "model.safetensors", "rb") as b:
        assert hashlib.sha256(a.read()).hexdigest() == hashlib.sha256(b.read()).hexdigest()


def test_custom_text_export_is_complete_and_readable_by_all(texts, tmp_path):
    import torch
    out = tmp_path / "out"
    # a umask that makes new files private: the export must still be 0644 like the repository's files
    r = run(train_cmd(texts, tmp_path / "cache", 6, "--out", str(out)), preexec_fn=lambda: os.umask(0o077))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in EXPORTED:
        assert os.stat(out / name).st_mode & 0o777 == 0o644, name
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "alpha.txt, beta.txt" in card and "Held-out cross-entropy (gamma.txt)" in card
    assert "Mamba2ForCausalLM" in card and "Shakespeare" not in card
    from tokenizers import Tokenizer
    assert Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size() == 300

    from transformers import Mamba2ForCausalLM  # the reference loads what was exported, every tensor
    model, info = Mamba2ForCausalLM.from_pretrained(str(out), output_loading_info=True)
    assert info["missing_keys"] == set() or info["missing_keys"] == [], info
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model(input_ids=torch.tensor([[0, 5, 7]])).logits.shape == (1, 3, 300)


def test_each_configuration_has_its_own_checkpoint_and_scratch_output(texts, tmp_path):
    cache = tmp_path / "cache"
    for seed in ("1", "2"):
        r = run(train_cmd(texts, cache, 4, "--seed", seed))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "resumed" not in r.stdout
        wrote = re.search(r"^wrote (.*)$", r.stdout, re.M).group(1)
        assert wrote.startswith(str(cache / "train")) and wrote.endswith("model")
    dirs = run_dirs(cache)
    assert len(dirs) == 2 and all(d.startswith("mamba2-") for d in dirs)
    for d in dirs:
        assert (cache / "train" / d / "ckpt.pt").exists()
