"""Tokenizer parity with HF `tokenizers`, bad-input errors, and long inputs.

The fixture tests read ids that tests/make_tokenizer_fixtures.py recorded from HF `tokenizers`,
so they run without it; the property tests compare against the live library when installed.
"""

import json
import pathlib
import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamba_wasm.errors import InputError, TokenizerError
from mamba_wasm.tokenizer import Tokenizer

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "tokenizer"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
VARIANTS = sorted(EXPECTED["encode"])
NEOX = FIXTURES / "tokenizer.json"


def neox_spec() -> dict:
    return json.loads(NEOX.read_text(encoding="utf-8"))


def load(spec: dict) -> Tokenizer:
    return Tokenizer.from_json(json.dumps(spec))


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(NEOX)


# -- parity with the recorded HF ids -----------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_encode_matches_hf_fixtures(name):
    tok = Tokenizer.from_file(FIXTURES / name)
    mismatches = [
        (text, want, tok.encode(text))
        for text, want in zip(EXPECTED["texts"], EXPECTED["encode"][name])
        if tok.encode(text) != want
    ]
    assert not mismatches, f"{len(mismatches)} of {len(EXPECTED['texts'])} differ, first: {mismatches[0]}"


@pytest.mark.parametrize("name", VARIANTS)
def test_decode_matches_hf_fixtures(name):
    tok = Tokenizer.from_file(FIXTURES / name)
    for case in EXPECTED["decode"][name]:
        assert tok.decode(case["ids"]) == case["text"], case["ids"]


def test_sequence_of_nfc_normalizer_is_nfc():
    spec = neox_spec()
    spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}]}
    tok = load(spec)
    assert [tok.encode(t) for t in EXPECTED["texts"]] == EXPECTED["encode"]["tokenizer.json"]


def test_decode_inverts_encode_up_to_nfc(tokenizer):
    for text in EXPECTED["texts"]:
        assert tokenizer.decode(tokenizer.encode(text)) == unicodedata.normalize("NFC", text)


def test_vocabulary_accessors(tokenizer):
    spec = neox_spec()
    largest = max([*spec["model"]["vocab"].values(), *(t["id"] for t in spec["added_tokens"])])
    assert tokenizer.vocab_size == largest + 1
    assert tokenizer.eos_token_id == 0 == tokenizer.token_to_id("<|endoftext|>")
    assert tokenizer.id_to_token(1) == "<|padding|>"
    assert tokenizer.token_to_id("  ") is not None  # an added run of spaces
    assert tokenizer.id_to_token(tokenizer.token_to_id("Ġthe")) == "Ġthe"
    assert tokenizer.token_to_id("no such token") is None
    assert tokenizer.id_to_token(tokenizer.vocab_size) is None
    assert tokenizer.encode("<|endoftext|>") == [0]
    assert tokenizer.decode([0, 1]) == "<|endoftext|><|padding|>"


def test_eos_is_none_without_endoftext():
    spec = neox_spec()
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<|endoftext|>"]
    del spec["model"]["vocab"]["<|endoftext|>"]  # the trainer puts special tokens there too
    assert load(spec).eos_token_id is None


def test_lone_surrogates_encode_as_replacement_character(tokenizer):
    assert tokenizer.encode("a\ud800b") == tokenizer.encode("a\ufffdb")
    assert tokenizer.encode("\ud83d\ude00") == tokenizer.encode("\U0001F600")


def test_100k_characters_encode(tokenizer):
    """Not a timed assertion: it prints the time so a slowdown shows in `pytest -s`."""
    prose = " ".join(t for t in EXPECTED["texts"] if t)
    for label, text in (("mixed corpus", prose), ("CJK (one long word)", "日本語の文章" * 20_000)):
        text = (text * (100_000 // len(text) + 1))[:100_000]
        fresh = Tokenizer.from_file(NEOX)  # empty word cache
        start = time.perf_counter()
        ids = fresh.encode(text)
        seconds = time.perf_counter() - start
        print(f"\nencode 100k chars, {label}: {len(ids)} tokens in {seconds:.3f} s")
        assert fresh.decode(ids) == unicodedata.normalize("NFC", text)


# -- bad input -----------------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(TokenizerError, match="nope"):
        Tokenizer.from_file(path)


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"model": ', encoding="utf-8")
    with pytest.raises(TokenizerError, match=f"{path}.*not valid JSON"):
        Tokenizer.from_file(path)
    with pytest.raises(TokenizerError, match="not valid JSON"):
        Tokenizer.from_json(b"\xff\xfe")
    with pytest.raises(TokenizerError, match="JSON object"):
        Tokenizer.from_json("[1, 2]")


def _broken(section: str, value):
    spec = neox_spec()
    if section.startswith("model."):
        key = section.split(".", 1)[1]
        if value is None:
            del spec["model"][key]
        else:
            spec["model"][key] = value
    elif value is None:
        del spec[section]
    else:
        spec[section] = value
    return spec


@pytest.mark.parametrize(
    "section, value, message",
    [
        ("model", None, 'missing "model"'),
        ("model.type", "WordPiece", "model type 'WordPiece' is not supported"),
        ("model.vocab", None, 'no "vocab"'),
        ("model.vocab", {"a": "x"}, "non-negative integers"),
        ("model.merges", None, 'no "merges"'),
        ("model.merges", ["Ġ t", "Ġt zzz"], "merge 2 .* 'zzz', which is not in the vocab"),
        ("model.merges", ["a b c"], "merge 1 .* not a pair"),
        ("model.merges", [["a"]], "merge 1 .* not a pair"),
        ("model.byte_fallback", True, "byte_fallback is not supported"),
        ("model.dropout", 0.1, "dropout is not supported"),
        ("model.continuing_subword_prefix", "##", "continuing_subword_prefix is not supported"),
        ("model.unk_token", "<unk>", "unk_token '<unk>' is not in the vocab"),
        ("normalizer", {"type": "NFKC"}, "unsupported normalizer 'NFKC'"),
        ("normalizer", {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}, "Sequence"),
        ("pre_tokenizer", {"type": "Metaspace"}, "unsupported pre_tokenizer 'Metaspace'"),
        ("pre_tokenizer", None, "unsupported pre_tokenizer null"),
        ("pre_tokenizer", {"type": "ByteLevel", "use_regex": False}, "use_regex false"),
        ("decoder", {"type": "WordPiece"}, "unsupported decoder 'WordPiece'"),
        ("decoder", None, "unsupported decoder null"),
        ("post_processor", {"type": "TemplateProcessing"}, "unsupported post_processor"),
        ("added_tokens", [{"content": "x"}], "integer id"),
    ],
)
def test_unsupported_or_malformed_sections(section, value, message):
    with pytest.raises(TokenizerError, match=f"^tokenizer.json: .*{message}"):
        load(_broken(section, value))


def test_error_messages_name_the_source():
    with pytest.raises(TokenizerError, match="^models/x/tokenizer.json: "):
        Tokenizer.from_json(json.dumps(_broken("decoder", None)), source="models/x/tokenizer.json")


@pytest.mark.parametrize("bad_id", [-1, 10**6, "3", 2.0])
def test_decode_of_an_id_outside_the_vocabulary(tokenizer, bad_id):
    with pytest.raises(InputError):
        tokenizer.decode([5, bad_id])


# -- live parity with HF tokenizers on random text -------------------------------------------------

# Added tokens of the fixture files, their NFD forms, and contractions.
SPECIAL_PIECES = ["<|endoftext|>", "<|padding|>", "<|mask|>", "[WORD]", "été", "e\u0301te\u0301", "A\u030a",
                  "  ", "\t\t", "'s", "'LL"]
ALL_CATEGORIES = "Lu Ll Lt Lm Lo Mn Mc Me Nd Nl No Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs Zl Zp Cc Cf Co Cn".split()
chunks = st.one_of(
    st.text(max_size=8),
    st.text(st.characters(codec="ascii"), max_size=8),
    st.sampled_from(ALL_CATEGORIES).flatmap(lambda c: st.text(st.characters(categories=[c]), max_size=6)),
    st.sampled_from(SPECIAL_PIECES),
    st.text(" \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000", max_size=6),
    st.text("e\u0301a\u030aA\u0323\u0307'sdt", max_size=6),
)
random_text = st.lists(chunks, max_size=8).map("".join)


@pytest.fixture(scope="module")
def hf_and_ours():
    """Both implementations for every fixture file, plus one with no normalizer."""
    import tokenizers as hf
    specs = {name: json.loads((FIXTURES / name).read_text(encoding="utf-8")) for name in VARIANTS}
    specs["no-normalizer"] = dict(specs["tokenizer.json"], normalizer=None)
    return {
        name: (hf.Tokenizer.from_str(json.dumps(spec)), load(spec)) for name, spec in specs.items()
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=random_text)
def test_encode_matches_live_hf_on_random_text(hf_and_ours, text):
    for name, (hf, ours) in hf_and_ours.items():
        assert ours.encode(text) == hf.encode(text).ids, name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decode_matches_live_hf_on_random_ids(hf_and_ours, data):
    hf, ours = hf_and_ours["tokenizer-added-flags.json"]
    ids = data.draw(st.lists(st.integers(0, ours.vocab_size - 1), max_size=16))
    assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)


@pytest.mark.parametrize("fuse_unk", [False, True])
@pytest.mark.parametrize("ignore_merges", [False, True])
def test_unk_token_and_ignore_merges_match_live_hf(fuse_unk, ignore_merges):
    """Options GPT-NeoX does not use, on a hand-made vocabulary that lacks most bytes."""
    import tokenizers as hf
    spec = neox_spec()
    spec["added_tokens"] = []
    spec["model"] = {
        "type": "BPE", "unk_token": "<unk>", "fuse_unk": fuse_unk, "ignore_merges": ignore_merges,
        "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "Ġ": 4, "ab": 5, "bc": 6, "abc": 7, "Ġa": 8},
        "merges": ["b c", "a b", "ab c", "Ġ a"],
    }
    reference, ours = hf.Tokenizer.from_str(json.dumps(spec)), load(spec)
    for text in ["abc", "abcab", "xyz abc", "aXYbc", " a  b", "ééé abc", ""]:
        assert ours.encode(text) == reference.encode(text).ids, text
