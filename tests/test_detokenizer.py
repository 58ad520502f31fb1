"""Streaming detokenizer: pieces join up to decode(ids), and never show half a character."""

import json
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamba_wasm.detokenizer import StreamingDetokenizer
from mamba_wasm.errors import InputError
from mamba_wasm.tokenizer import BYTE_CHARS, Tokenizer

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "tokenizer"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
TOKENIZER = Tokenizer.from_file(FIXTURES / "tokenizer.json")
BYTE_IDS = [TOKENIZER.token_to_id(c) for c in BYTE_CHARS]  # one token per byte value


def stream(ids, tokenizer=TOKENIZER) -> list[str]:
    detok = StreamingDetokenizer(tokenizer)
    return [detok.push(i) for i in ids] + [detok.flush()]


def byte_tokens(data: bytes) -> list[int]:
    return [BYTE_IDS[b] for b in data]


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer-added-flags.json"])
def test_recorded_hf_decodes_stream_identically(name):
    tokenizer = Tokenizer.from_file(FIXTURES / name)
    for case in EXPECTED["decode"][name]:
        assert "".join(stream(case["ids"], tokenizer)) == case["text"], case["ids"]


def test_a_character_split_over_tokens_appears_whole_with_its_last_byte():
    pieces = stream(byte_tokens("a👩‍💻é".encode()))
    assert pieces[0] == "a"
    assert pieces[1:4] == ["", "", ""]  # F0 9F 91: not yet a character
    assert pieces[4] == "👩"
    assert "".join(pieces) == "a👩‍💻é"


def test_flush_shows_an_unfinished_character_as_decode_does():
    ids = byte_tokens("x€".encode()[:-1])  # E2 82 without its last byte
    pieces = stream(ids)
    assert pieces == ["x", "", "", "\ufffd"]
    assert "".join(pieces) == TOKENIZER.decode(ids)


def test_invalid_bytes_are_replaced_as_soon_as_they_are_certain():
    detok = StreamingDetokenizer(TOKENIZER)
    assert detok.push(BYTE_IDS[0x80]) == "\ufffd"  # a continuation byte cannot start a character
    assert detok.push(BYTE_IDS[0xE2]) == ""
    assert detok.push(BYTE_IDS[0x41]) == "\ufffdA"  # E2 then 'A': E2 can never complete


def test_flush_resets_for_a_new_stream():
    detok = StreamingDetokenizer(TOKENIZER)
    detok.push(BYTE_IDS[0xC3])
    assert detok.flush() == "\ufffd"
    assert detok.push(BYTE_IDS[0x41]) == "A"
    assert detok.flush() == ""


def test_out_of_range_id_is_an_input_error():
    with pytest.raises(InputError):
        StreamingDetokenizer(TOKENIZER).push(TOKENIZER.vocab_size)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(BYTE_IDS), st.integers(0, TOKENIZER.vocab_size - 1)), max_size=40))
def test_pieces_join_to_decode_for_any_ids(ids):
    pieces = stream(ids)
    assert "".join(pieces) == TOKENIZER.decode(ids)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_valid_text_streams_without_replacement_characters(text):
    text = text.replace("\ufffd", "")
    ids = TOKENIZER.encode(text)
    pieces = stream(ids)
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) == TOKENIZER.decode(ids)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_byte_by_byte_streaming_emits_each_character_once_complete(text):
    """The harshest split: every byte its own token. Each push returns whole characters only."""
    pieces = stream(byte_tokens(text.encode()))
    assert "".join(pieces) == text
    assert pieces[-1] == ""
