"""The JSON the page's inspection views read (mamba_wasm/page_views.py) carries the package's own values."""

import json
from pathlib import Path

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm.page_views import MAX_PROBE_TOKENS, probe_record, score_record, token_records

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module", params=["shakespeare", "shakespeare-mamba2"])  # Mamba-1 and Mamba-2
def demo(request):
    folder = MODELS / request.param
    return mamba_wasm.load_model(folder), mamba_wasm.Tokenizer.from_file(folder / "tokenizer.json")


def test_token_records_are_the_sessions_probabilities(demo):
    model, tok = demo
    session = mamba_wasm.Session(model, tok, record_probabilities=True)
    session.start("ROMEO:", 12, temperature=0.8, top_k=40, seed=3)
    text = session.advance(12)
    records = json.loads(token_records(session, 4))
    assert [r["id"] for r in records] == session.generated_ids[4:]
    for record, probabilities in zip(records, session.token_probabilities[4:]):
        assert record["p"] == probabilities.sampled_probability and record["p_model"] == probabilities.model_probability
        assert [a[0] for a in record["alts"]] == [a.token for a in probabilities.alternatives]
        assert sum(a[2] for a in record["alts"]) <= 1 + 1e-9
    assert text


def test_score_record_matches_score(demo):
    model, tok = demo
    text = "To be, or not to be, that is the question."
    record = json.loads(score_record(model, tok, text))
    native = mamba_wasm.score(model, tok, text)
    assert record["ids"] == native.ids and np.allclose(record["nll"], native.nll, rtol=0, atol=0)
    assert "".join(record["pieces"]) == text and len(record["pieces"]) == len(record["nll"])
    assert record["totals"] == native.totals()


def test_probe_record_is_layers_by_tokens(demo):
    model, tok = demo
    record = json.loads(probe_record(model, tok, "ROMEO: But soft"))
    probe = mamba_wasm.Probe(model.config.n_layer)
    model.forward(tok.encode("ROMEO: But soft"), model.new_state(), probe=probe)
    assert np.array_equal(np.array(record["delta"], np.float32), probe.delta_mean)
    assert np.array_equal(np.array(record["kept"], np.float32), probe.kept)
    assert len(record["pieces"]) == len(record["ids"]) == len(record["delta"])
    assert len(record["delta"][0]) == record["n_layer"] == model.config.n_layer
    long = json.loads(probe_record(model, tok, "to be " * 2000))
    assert len(long["ids"]) == MAX_PROBE_TOKENS


def test_probe_record_refuses_empty_text(demo):
    model, tok = demo
    with pytest.raises(mamba_wasm.InputError, match="no text"):
        probe_record(model, tok, "")
