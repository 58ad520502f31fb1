"""What the page's inspection views show, as JSON text: one string crosses from Python to the
worker instead of a proxy per number.

    token_records(session, start)          generated tokens start.. : id, probabilities, alternatives
    score_record(model, tokenizer, text)   scoring.score: ids, per-token nll, totals, each token's text
    probe_record(model, tokenizer, text)   inspection.Probe over the text: Δ and kept, layers x tokens

A token's text is what the streaming detokenizer gives when it arrives, so the pieces join up to
the text (a token that ends inside a UTF-8 character has "" and the next one carries it). An
alternative's text is its bytes on their own, with U+FFFD for a partial character.
"""

import json

from .detokenizer import StreamingDetokenizer
from .errors import InputError
from .inspection import Probe
from .scoring import score

MAX_PROBE_TOKENS = 1024  # the state view's longest text: one forward with a probe, a canvas column each


def _token_text(tokenizer, token):
    return tokenizer.token_bytes(token).decode("utf-8", errors="replace")


def _pieces(tokenizer, ids):
    detokenizer = StreamingDetokenizer(tokenizer)
    return [detokenizer.push(token) for token in ids]


def token_records(session, start):
    """JSON list, one record per generated token from index `start` on (the Session must record
    probabilities): {id, p (as sampled), p_model (raw softmax), alts: [[id, text, p, p_model], ...]}."""
    tokenizer = session.tokenizer
    records = []
    for probabilities in session.token_probabilities[start:]:
        records.append({
            "id": probabilities.token, "p": probabilities.sampled_probability, "p_model": probabilities.model_probability,
            "alts": [[a.token, _token_text(tokenizer, a.token), a.sampled_probability, a.model_probability]
                     for a in probabilities.alternatives],
        })
    return json.dumps(records)


def _whole(model, view):
    """Score and the state view run the model in sequence mode (forward), which a model split
    across workers (shard_group.ShardGroup: step and prefill only) does not have."""
    if not hasattr(model, "forward"):
        raise InputError(f"{view} needs the whole model in one worker, and this one is split across "
                         "workers: set Workers to 1 and reload to use it")


def score_record(model, tokenizer, text):
    """JSON {ids, nll, pieces, totals}: scoring.score of `text`; pieces[i] is the text of ids[i+1],
    the token nll[i] scores."""
    _whole(model, "Score")
    result = score(model, tokenizer, text)
    scored = result.ids[1:]
    return json.dumps({"ids": [int(token) for token in result.ids], "nll": [float(x) for x in result.nll],
                       "pieces": _pieces(tokenizer, scored), "totals": result.totals()})


def probe_record(model, tokenizer, text):
    """JSON {ids, pieces, n_layer, delta, kept}: the text (at most MAX_PROBE_TOKENS tokens, from a
    fresh state) run through model.forward with a Probe; delta and kept are (tokens, n_layer) as
    lists of rows: mean Δ and mean exp(Δ·A) per token and layer."""
    _whole(model, "The state view")
    if not isinstance(text, str) or not text:
        raise InputError("there is no text to inspect: generate or type some first")
    ids = tokenizer.encode(text)[:MAX_PROBE_TOKENS]
    probe = Probe(model.config.n_layer)
    model.forward(ids, model.new_state(), probe=probe)
    return json.dumps({"ids": [int(token) for token in ids], "pieces": _pieces(tokenizer, ids),
                       "n_layer": model.config.n_layer, "delta": probe.delta_mean.tolist(), "kept": probe.kept.tolist()})
