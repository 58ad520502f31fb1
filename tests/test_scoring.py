"""`score`: per-token negative log-likelihood under the raw model, equal to transformers'
cross-entropy (`labels=input_ids`) on Mamba-1 and Mamba-2 fixtures and on the demo model; and the
`mamba-wasm score` command."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm.scoring import SCORE_BLOCK

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "models"
SHAKESPEARE = ROOT / "models" / "shakespeare"
TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
TOLERANCE = 1e-4  # nats per token


def hf_nll(folder, ids):
    """transformers' per-token cross-entropy of ids[1:] (float32, as its loss computes it)."""
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    architecture = json.loads((Path(folder) / "config.json").read_text())["model_type"]
    hf_class = {"mamba": transformers.MambaForCausalLM, "mamba2": transformers.Mamba2ForCausalLM}[architecture]
    model = hf_class.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        tensor = torch.tensor([ids])
        logits = model(tensor).logits[0, :-1]
        loss = model(tensor, labels=tensor).loss.item()
        nll = torch.nn.functional.cross_entropy(logits, tensor[0, 1:], reduction="none").numpy()
    return nll, loss


@pytest.mark.parametrize("name", ["hf_tied_bias", "mamba2_hf_nobias"])
def test_score_ids_equals_transformers_cross_entropy(name):
    folder = FIXTURES / name
    model = mamba_wasm.load_model(folder)
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, SCORE_BLOCK + 40).tolist()  # crosses a block
    ours = mamba_wasm.score_ids(model, ids)
    reference, loss = hf_nll(folder, ids)
    assert ours.nll.shape == (len(ids) - 1,)
    assert abs(ours.nats_per_token - loss) <= TOLERANCE
    assert np.max(np.abs(ours.nll - reference)) <= TOLERANCE
    assert ours.perplexity == pytest.approx(math.exp(loss), rel=1e-3)
    assert ours.nats_per_char is None  # no text


def test_score_of_a_text_on_the_demo_model_equals_transformers():
    model, tokenizer = mamba_wasm.from_pretrained(SHAKESPEARE)
    result = mamba_wasm.score(model, tokenizer, TEXT)
    assert result.start_token == tokenizer.eos_token_id == result.ids[0]
    assert result.ids[1:] == tokenizer.encode(TEXT)
    reference, loss = hf_nll(SHAKESPEARE, result.ids)
    assert abs(result.nats_per_token - loss) <= TOLERANCE
    assert np.max(np.abs(result.nll - reference)) <= TOLERANCE
    assert result.n_chars == len(TEXT)
    assert result.nats_per_char == pytest.approx(result.total_nats / len(TEXT))


def test_score_is_the_same_from_blocks_as_from_one_forward():
    """Blocks carry the state: the nll equals one forward over the whole sequence."""
    model = mamba_wasm.load_model(FIXTURES / "hf_untied_k3")
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, 2 * SCORE_BLOCK + 3).tolist()
    logits = model.forward(ids).astype(np.float64)[:-1]  # (l-1, v)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    expected = -logp[np.arange(len(ids) - 1), ids[1:]]
    assert np.max(np.abs(mamba_wasm.score_ids(model, ids).nll - expected)) <= 1e-5


def test_bad_input_is_refused():
    model, tokenizer = mamba_wasm.from_pretrained(ROOT / "models" / "tiny-random")
    with pytest.raises(mamba_wasm.InputError, match="empty"):
        mamba_wasm.score(model, tokenizer, "")
    with pytest.raises(mamba_wasm.InputError, match="must be a str"):
        mamba_wasm.score(model, tokenizer, b"bytes")
    with pytest.raises(mamba_wasm.InputError, match="at least two"):
        mamba_wasm.score_ids(model, [3])
    with pytest.raises(mamba_wasm.InputError, match="out of range"):
        mamba_wasm.score_ids(model, [3, model.config.vocab_size])


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "mamba_wasm", "score", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, input=stdin)


def test_cli_json_equals_the_library(tmp_path):
    model, tokenizer = mamba_wasm.from_pretrained(SHAKESPEARE)
    expected = mamba_wasm.score(model, tokenizer, TEXT)
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    for run in (cli(SHAKESPEARE, "--file", path, "--json"), cli(SHAKESPEARE, "--text", "-", "--json", stdin=TEXT)):
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["ids"] == expected.ids
        assert out["nll"] == pytest.approx(expected.nll.tolist(), abs=1e-9)
        assert out["nats_per_char"] == pytest.approx(expected.nats_per_char)
        assert out["perplexity"] == pytest.approx(expected.perplexity)


def test_cli_table_and_errors():
    run = cli(SHAKESPEARE, "--text", TEXT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "token\tnats\ttext"
    assert len(lines) == 2 + len(mamba_wasm.Tokenizer.from_file(SHAKESPEARE / "tokenizer.json").encode(TEXT))
    assert "nats/char" in lines[-1] and "perplexity" in lines[-1]
    empty = cli(SHAKESPEARE, "--text", "")
    assert empty.returncode == 2 and empty.stderr.startswith("mamba-wasm: error: the text is empty")
    missing = cli(SHAKESPEARE, "--file", "/no/such/file.txt")
    assert missing.returncode == 2 and "cannot read the file /no/such/file.txt" in missing.stderr
    assert "(default: off)" in cli("--help").stdout
