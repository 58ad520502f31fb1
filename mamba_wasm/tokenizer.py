"""Byte-level BPE that reads a Hugging Face tokenizer.json, in pure Python (Pyodide has no `tokenizers`).

Every Mamba checkpoint uses EleutherAI/gpt-neox-20b's tokenizer. Its tokenizer.json has an NFC
normalizer, a ByteLevel pre-tokenizer (add_prefix_space false), a BPE model with no unk token,
a ByteLevel decoder, and added tokens: <|endoftext|> and <|padding|> (special, not normalized)
and runs of 2 to 24 spaces (not special, normalized). `encode` mirrors HF tokenizers step by step
and produces the same ids:

    1. added tokens with normalized=false are split off the raw text      (added_vocabulary.rs)
    2. each remaining piece is NFC-normalized, then added tokens with
       normalized=true are split off it                                   (added_vocabulary.rs)
    3. each remaining piece gets the optional prefix space, is cut by the
       GPT-2 regex, and its UTF-8 bytes are mapped to printable chars     (pre_tokenizers/byte_level.rs)
    4. each word is merged by BPE, lowest merge rank first                (models/bpe/model.rs, word.rs)

`decode` is the ByteLevel decoder: tokens back to bytes, then UTF-8 with U+FFFD for invalid
sequences. References: https://github.com/huggingface/tokenizers/tree/main/tokenizers/src
"""

import heapq
import json
import operator
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import InputError, TokenizerError, without_traceback
from .gguf import read_gguf
from .gguf_tokenizer import tokenizer_json_from_gguf
from .unicode_classes import (
    LETTERS,
    NFC_NON_STARTERS,
    NFC_UNKNOWN_COMPOSITE_TAILS,
    NUMBERS,
    WHITE_SPACE,
    WORD,
)

EOS_TOKEN = "<|endoftext|>"
# GPT-NeoX's tokenizer.json is 2.1 MB and the biggest in common use (256k-token vocabularies)
# some 35 MB; a bigger file is refused before it is parsed.
MAX_TOKENIZER_BYTES = 67_108_864  # 64 MiB
# Units of work (a word, a character to merge, a merge) between two slices of encode_steps:
# ~5 ms natively, some 25 ms in Pyodide.
ENCODE_SLICE = 4096


# ---------------------------------------------------------------------------------------------
# Bytes <-> printable characters (GPT-2's bytes_to_unicode, byte_level.rs `bytes_char`)
# ---------------------------------------------------------------------------------------------


def _bytes_to_chars() -> str:
    """The 256 characters that stand for bytes 0..255: printable bytes keep their own code point,
    the others (controls, space, ...) are moved to U+0100 and up, so every token is visible text."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, shifted = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + shifted)
            shifted += 1
    return "".join(chars[b] for b in range(256))


BYTE_CHARS = _bytes_to_chars()
_BYTE_OF_CHAR = {c: b for b, c in enumerate(BYTE_CHARS)}
# A word's UTF-8 bytes, read as latin-1, translate in one C call to the byte-level alphabet.
_LATIN1_TO_BYTE_CHARS = str.maketrans({b: c for b, c in enumerate(BYTE_CHARS)})


# ---------------------------------------------------------------------------------------------
# The reference's Unicode: the GPT-2 split regex, \w, and NFC (tables in unicode_classes.py)
# ---------------------------------------------------------------------------------------------


def _spans(table: str) -> list[tuple[int, int]]:
    """'41-5a aa' -> [(0x41, 0x5a), (0xaa, 0xaa)]."""
    spans = []
    for item in table.split():
        first, _, last = item.partition("-")
        spans.append((int(first, 16), int(last or first, 16)))
    return spans


def _char_class(table: str) -> str:
    """The body of a regex class: '41-5a aa' -> '\\U00000041-\\U0000005a\\U000000aa-\\U000000aa'."""
    return "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last in _spans(table))


def _char_set(table: str) -> frozenset[str]:
    return frozenset(chr(cp) for first, last in _spans(table) for cp in range(first, last + 1))


class _LazyPattern:
    """A regex compiled on its first use, not at import. The reference's classes are thousands of
    ranges: compiling the five patterns below takes ~0.07 s natively and ~0.5 s in Pyodide, which
    importing the package (before the page is ready) should not pay. compile_patterns() compiles
    them when the caller chooses (the page: right after ready, while the user reads)."""

    def __init__(self, source: str):
        self.source = source
        self._compiled: re.Pattern | None = None

    @property
    def compiled(self) -> re.Pattern:
        if self._compiled is None:
            self._compiled = re.compile(self.source)
        return self._compiled


_L, _N, _S, _W = (_char_class(t) for t in (LETTERS, NUMBERS, WHITE_SPACE, WORD))
# HF: r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# Python's re has no \p{..}, and its \s is not Unicode White_Space (it includes \x1c-\x1f and
# excludes nothing the reference has), so every class is spelled out from the reference's tables.
GPT2_SPLIT = _LazyPattern(
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{_L}]+| ?[{_N}]+| ?[^{_S}{_L}{_N}]+|[{_S}]+(?![^{_S}])|[{_S}]+"
)
# Characters split per call of _split_words (~10 ms natively): a long text is cut as it is encoded.
_SPLIT_CHARS = 8 * 4096


def _split_words(piece: str) -> Iterator[list[str]]:
    """GPT2_SPLIT.findall(piece), in lists of the words of about _SPLIT_CHARS characters each.

    The pattern's matches tile the text (every character is a letter, a number, white space or
    something else), so a chunk's words end where the next chunk starts. Only a chunk's last word
    can be cut short by the chunk's end (no other match or lookahead reaches it): it is split
    again with the next chunk; a single word longer than a chunk widens the chunk.
    """
    position, size = 0, _SPLIT_CHARS
    while position < len(piece):
        end = position + size
        words = GPT2_SPLIT.compiled.findall(piece, position, end)
        if end < len(piece):
            if len(words) < 2:
                size *= 2
                continue
            words.pop()
            size = _SPLIT_CHARS
        position += sum(map(len, words))
        yield words


_SPACE_AT_START = _LazyPattern(rf"[{_S}]*")
_SPACE_AT_END = _LazyPattern(rf"[{_S}]*\Z")
# Added tokens' single_word check uses Rust's \w, which unlike Python's has marks and lacks No.
_WORD_AT_END = _LazyPattern(rf"[{_W}]\Z")
_WORD_AT_START = _LazyPattern(rf"[{_W}]")


def compile_patterns() -> None:
    """Compile the regexes the tokenizer uses (each once per process), so that the first encode
    does not pay for it."""
    for pattern in (GPT2_SPLIT, _SPACE_AT_START, _SPACE_AT_END, _WORD_AT_END, _WORD_AT_START):
        pattern.compiled

_NFC_NON_STARTERS = _char_set(NFC_NON_STARTERS)
_NFC_UNKNOWN_COMPOSITE_TAILS = _char_set(NFC_UNKNOWN_COMPOSITE_TAILS)


def nfc(text: str) -> str:
    """NFC as HF tokenizers computes it: with Unicode 9.0 tables (normalizers/unicode.rs).

    To the reference a combining mark newer than 9.0 is a starter: nothing is reordered across
    it and nothing composes over it. So we cut the text around such marks (and before the second
    half of the one composition it does not know) and let `unicodedata` normalize the pieces.
    Text that `unicodedata` finds normalized is normalized for the older tables too.
    """
    if unicodedata.is_normalized("NFC", text):
        return text
    pieces, start = [], 0
    for i, c in enumerate(text):
        if (unicodedata.combining(c) and c not in _NFC_NON_STARTERS) or c in _NFC_UNKNOWN_COMPOSITE_TAILS:
            pieces += [unicodedata.normalize("NFC", text[start:i]), c]
            start = i + 1
    pieces.append(unicodedata.normalize("NFC", text[start:]))
    return "".join(pieces)


# ---------------------------------------------------------------------------------------------
# Added tokens (added_vocabulary.rs)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddedToken:
    """One entry of tokenizer.json's "added_tokens"; the flags mean what they mean in HF."""

    id: int
    content: str
    special: bool
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = True


class _AddedTokenMatcher:
    """Finds added tokens in a string, leftmost-longest like HF's Aho-Corasick (MatchKind::LeftmostLongest).

    An alternation tried longest first finds, at the leftmost position that matches at all, the
    longest token there; finditer then continues after it, like `leftmost_find_iter`.
    """

    def __init__(self, tokens_by_pattern: dict[str, AddedToken]):
        self._tokens = tokens_by_pattern
        patterns = sorted(tokens_by_pattern, key=len, reverse=True)
        self._regex = re.compile("|".join(map(re.escape, patterns))) if patterns else None

    def split(self, text: str) -> list[tuple[str, AddedToken | None]]:
        """Cut text into (piece, token) pairs covering it: token is None for ordinary text.

        Mirrors `AddedVocabulary::find_matches` including single_word, lstrip and rstrip.
        """
        if self._regex is None or not text:
            return [(text, None)]
        pieces: list[tuple[str, AddedToken | None]] = []
        done = 0
        for match in self._regex.finditer(text):
            token = self._tokens[match.group()]
            start, stop = match.span()
            if token.single_word and (
                (start > 0 and _WORD_AT_END.compiled.search(text, 0, start))
                or (stop < len(text) and _WORD_AT_START.compiled.match(text, stop))
            ):
                continue
            if token.lstrip:
                start = max(_SPACE_AT_END.compiled.search(text, 0, start).start(), done)
            if token.rstrip:
                stop = _SPACE_AT_START.compiled.match(text, stop).end()
            if done < start:
                pieces.append((text[done:start], None))
            pieces.append((text[start:stop], token))
            done = stop
        if done < len(text):
            pieces.append((text[done:], None))
        return pieces


# ---------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------


class Tokenizer:
    """Text <-> token ids for a byte-level BPE tokenizer.json (GPT-NeoX / Mamba style).

    Build it with `Tokenizer.from_file(path)` or `Tokenizer.from_json(text)`; both raise
    TokenizerError naming the file and the problem for anything this BPE cannot reproduce exactly.
    """

    # Like HF's BPE cache: at most 10,000 words, each shorter than 256 characters.
    _CACHE_SIZE, _CACHE_WORD_LENGTH = 10_000, 256

    def __init__(self, spec: dict, source: str = "tokenizer.json"):
        self._source = source
        model = _read_model(spec.get("model"), source)  # first: a WordPiece or Unigram file is named as such
        self._nfc = _read_normalizer(spec.get("normalizer"), source)
        self._add_prefix_space = _read_pre_tokenizer(spec.get("pre_tokenizer"), source)
        _check_decoder(spec.get("decoder"), source)
        _check_post_processor(spec.get("post_processor"), source)
        self._vocab = model.vocab
        self._merges = model.merges
        self._unk_id = model.unk_id
        self._fuse_unk = model.fuse_unk
        self._ignore_merges = model.ignore_merges
        self._added = _read_added_tokens(spec.get("added_tokens") or [], source)
        self._added_by_content = {t.content: t for t in self._added}
        self._token_of_id = {i: s for s, i in self._vocab.items()}
        # A normalized added token decodes as its normalized form (added_vocabulary.rs
        # `simple_id_to_token`); for GPT-NeoX's tokens both forms are the same.
        for t in self._added:
            self._token_of_id[t.id] = self._normalize(t.content) if t.normalized else t.content
        try:  # JSON's \u escapes can spell a lone surrogate, which has no UTF-8 (HF refuses the file)
            "".join(self._token_of_id.values()).encode("utf-8")
        except UnicodeEncodeError as e:
            raise TokenizerError(f"{source}: token {e.object[e.start:e.end]!r} is a lone surrogate, not text") from None
        self._vocab_size = max(self._token_of_id, default=-1) + 1
        self._raw_matcher = _AddedTokenMatcher({t.content: t for t in self._added if not t.normalized})
        self._normalized_matcher = _AddedTokenMatcher(
            {self._normalize(t.content): t for t in self._added if t.normalized}
        )
        self._word_cache: dict[str, list[int]] = {}
        self._bytes_cache: dict[int, bytes] = {}

    @classmethod
    @without_traceback  # a kept error must not keep the file's text alive
    def from_file(cls, path) -> "Tokenizer":
        try:
            _check_tokenizer_size(os.path.getsize(path), str(path))
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise TokenizerError(f"{path}: cannot read tokenizer file ({e.strerror or e})") from None
        return cls.from_json(data, source=str(path))

    @classmethod
    @without_traceback  # a kept error must not keep the file's text and parsed JSON alive
    def from_json(cls, text: str | bytes, source: str = "tokenizer.json") -> "Tokenizer":
        _check_tokenizer_size(len(text), source)  # characters of a str: at most its UTF-8 bytes
        try:
            spec = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise TokenizerError(f"{source}: not valid JSON ({e})") from e
        if not isinstance(spec, dict):
            raise TokenizerError(f"{source}: expected a JSON object at the top level")
        return cls(spec, source)

    @classmethod
    def from_gguf(cls, gguf, source: str = "model.gguf") -> "Tokenizer":
        """The tokenizer in a llama.cpp .gguf file's metadata: its bytes, or a GGUFFile already read."""
        gguf = gguf if hasattr(gguf, "metadata") else read_gguf(gguf, source)
        return cls(tokenizer_json_from_gguf(gguf), gguf.source)

    # -- vocabulary ----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Largest id + 1 over the model vocabulary and the added tokens."""
        return self._vocab_size

    @property
    def eos_token_id(self) -> int | None:
        return self.token_to_id(EOS_TOKEN)

    def token_to_id(self, token: str) -> int | None:
        added = self._added_by_content.get(token)
        return added.id if added else self._vocab.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._token_of_id.get(token_id)

    # -- encode --------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids for text, the same as HF `Tokenizer.encode(text).ids`."""
        ids: list[int] = []
        for part in self.encode_steps(text):
            ids += part
        return ids

    def encode_steps(self, text: str) -> Iterator[list[int]]:
        """`encode` in slices of bounded work: yields lists of ids (possibly empty) whose
        concatenation is encode(text), each after at most ENCODE_SLICE units of work (a word, a
        character, a merge), a few milliseconds natively. A caller that must stay responsive (the
        web worker, which honours Stop between two slices) drives it one next() at a time: a
        prompt of a million spaces is one word of a million characters, seconds of merging."""
        text = _replace_lone_surrogates(text)
        work = _WorkMeter()
        for raw, token in self._raw_matcher.split(text):
            if token:
                work.ids.append(token.id)
                continue
            for piece, token in self._normalized_matcher.split(self._normalize(raw)):
                if token:
                    work.ids.append(token.id)
                else:
                    yield from self._encode_piece(piece, work)
            if work.spent(1):
                yield work.take()
        yield work.take()

    def _normalize(self, text: str) -> str:
        return nfc(text) if self._nfc else text

    def _encode_piece(self, piece: str, work: "_WorkMeter") -> Iterator[list[int]]:
        """Pre-tokenize a piece that holds no added token, and add each word's BPE ids to
        work.ids, yielding them whenever a slice of work is spent."""
        if not piece:
            return
        if self._add_prefix_space and not piece.startswith(" "):
            piece = " " + piece
        for words in _split_words(piece):
            ids = work.ids
            for word in words:
                cached = self._word_cache.get(word)
                if cached is None:
                    byte_word = word.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_BYTE_CHARS)
                    cached = yield from self._bpe(byte_word, work)
                    ids = work.ids  # a slice may have been handed out meanwhile
                    if len(self._word_cache) < self._CACHE_SIZE and len(word) < self._CACHE_WORD_LENGTH:
                        self._word_cache[word] = cached
                ids += cached
            if work.spent(len(words)):
                yield work.take()

    def _bpe(self, word: str, work: "_WorkMeter") -> Iterator[list[int]]:
        """Merge a word's characters, lowest rank first, leftmost first among equal ranks; a
        generator that returns the word's ids and yields work.take() between slices of merging.

        Mirrors `BPE::merge_word` and `Word::merge_all`: a heap of candidate merges over a linked
        list of symbols, so a very long word (a page of CJK text is one \\p{L}+ word) stays
        O(n log n); heap entries made stale by an earlier merge are skipped.
        """
        if self._ignore_merges and word in self._vocab:
            return [self._vocab[word]]
        symbols = yield from self._initial_symbols(word, work)
        merges = self._merges
        n = len(symbols)
        following = list(range(1, n)) + [-1]
        preceding = list(range(-1, n - 1))
        alive = [True] * n
        heap = []
        for start in range(0, n - 1, ENCODE_SLICE):  # slices: only a huge word has more than one
            for pos in range(start, min(start + ENCODE_SLICE, n - 1)):
                merge = merges.get((symbols[pos], symbols[pos + 1]))
                if merge:
                    heap.append((merge[0], pos, merge[1]))
            if work.spent(min(ENCODE_SLICE, n - 1 - start)):
                yield work.take()
        heapq.heapify(heap)
        pops = 0
        while heap:
            pops += 1
            if pops == ENCODE_SLICE:
                pops = 0
                yield work.take()
            _, pos, new_id = heapq.heappop(heap)
            right = following[pos]
            if not alive[pos] or right == -1:
                continue
            merge = merges.get((symbols[pos], symbols[right]))
            if merge is None or merge[1] != new_id:
                continue
            symbols[pos] = new_id
            alive[right] = False
            following[pos] = following[right]
            if following[right] != -1:
                preceding[following[right]] = pos
            left = preceding[pos]
            if left != -1 and (merge := merges.get((symbols[left], new_id))):
                heapq.heappush(heap, (merge[0], left, merge[1]))
            right = following[pos]
            if right != -1 and (merge := merges.get((new_id, symbols[right]))):
                heapq.heappush(heap, (merge[0], pos, merge[1]))
        return [s for s, keep in zip(symbols, alive) if keep]

    def _initial_symbols(self, word: str, work: "_WorkMeter") -> Iterator[list[int]]:
        """One id per character; a character missing from the vocabulary becomes the unk token
        (consecutive ones fused when fuse_unk) or, without an unk token, is dropped, as in HF.
        A generator that returns the ids, yielding between slices of a huge word."""
        symbols: list[int] = []
        previous_unknown = False
        for start in range(0, len(word), ENCODE_SLICE):
            chunk = word[start : start + ENCODE_SLICE]
            for c in chunk:
                token_id = self._vocab.get(c)
                if token_id is not None:
                    symbols.append(token_id)
                elif self._unk_id is not None and not (self._fuse_unk and previous_unknown):
                    symbols.append(self._unk_id)
                previous_unknown = token_id is None
            if work.spent(len(chunk)):
                yield work.take()
        return symbols

    # -- decode --------------------------------------------------------------------------------

    def decode(self, ids) -> str:
        """Text for ids, special tokens included (HF decode(ids, skip_special_tokens=False))."""
        return b"".join(map(self.token_bytes, ids)).decode("utf-8", "replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for: the ByteLevel decoder's per-token step.

        A token whose characters all belong to the byte alphabet maps back to those bytes; any
        other token (e.g. GPT-NeoX's added runs of spaces: U+0020 is not in the alphabet) stands
        for its own UTF-8, as in byte_level.rs `decode_chain`.
        """
        try:
            index = operator.index(token_id)  # accepts NumPy integers, refuses 2.0 and "2"
        except TypeError:
            raise InputError(f"token id {token_id!r} is not an integer") from None
        cached = self._bytes_cache.get(index)
        if cached is not None:
            return cached
        token = self._token_of_id.get(index)
        if token is None:
            raise InputError(
                f"token id {index} is not in the vocabulary of {self._source} "
                f"(ids run from 0 to {self._vocab_size - 1})"
            )
        try:
            data = bytes(_BYTE_OF_CHAR[c] for c in token)
        except KeyError:
            data = token.encode("utf-8")
        self._bytes_cache[index] = data
        return data


class _WorkMeter:
    """The ids encode_steps has found but not yet handed out, and the work done since it last
    handed them out, so it can yield after every ENCODE_SLICE units."""

    def __init__(self):
        self.ids: list[int] = []
        self.units = 0

    def spent(self, units: int) -> bool:
        """Count `units` more; True when a slice is used up (then take() what was found)."""
        self.units += units
        return self.units >= ENCODE_SLICE

    def take(self) -> list[int]:
        ids, self.ids, self.units = self.ids, [], 0
        return ids


# ---------------------------------------------------------------------------------------------
# Reading tokenizer.json: each section either parses to what we support or raises
# ---------------------------------------------------------------------------------------------


def _read_normalizer(spec, source: str) -> bool:
    """True for NFC, False for none. A Sequence may hold NFCs (NFC is idempotent)."""
    if spec is None:
        return False
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "NFC":
        return True
    if kind == "Sequence":
        parts = spec.get("normalizers") or []
        if isinstance(parts, list) and all(isinstance(p, dict) and p.get("type") == "NFC" for p in parts):
            return bool(parts)
    raise TokenizerError(f"{source}: unsupported normalizer {_describe(spec)}; supported: NFC or none")


def _read_pre_tokenizer(spec, source: str) -> bool:
    """The ByteLevel pre-tokenizer's add_prefix_space (HF's default: true). use_regex must hold."""
    if isinstance(spec, dict) and spec.get("type") == "Sequence":
        parts = spec.get("pretokenizers") or []
        spec = parts[0] if isinstance(parts, list) and len(parts) == 1 else spec
    if not (isinstance(spec, dict) and spec.get("type") == "ByteLevel"):
        raise TokenizerError(f"{source}: unsupported pre_tokenizer {_describe(spec)}; supported: ByteLevel")
    if not spec.get("use_regex", True):
        raise TokenizerError(f"{source}: ByteLevel pre_tokenizer with use_regex false is not supported")
    return bool(spec.get("add_prefix_space", True))


def _check_decoder(spec, source: str) -> None:
    if not (isinstance(spec, dict) and spec.get("type") == "ByteLevel"):
        raise TokenizerError(f"{source}: unsupported decoder {_describe(spec)}; supported: ByteLevel")


def _check_post_processor(spec, source: str) -> None:
    """ByteLevel only trims offsets, so encode's ids are unaffected; other processors add tokens."""
    if spec is not None and not (isinstance(spec, dict) and spec.get("type") == "ByteLevel"):
        raise TokenizerError(
            f"{source}: unsupported post_processor {_describe(spec)}; supported: ByteLevel or none"
        )


@dataclass(frozen=True)
class _BpeModel:
    vocab: dict[str, int]
    merges: dict[tuple[int, int], tuple[int, int]]  # (left id, right id) -> (rank, merged id)
    unk_id: int | None
    fuse_unk: bool
    ignore_merges: bool


def _read_model(spec, source: str) -> _BpeModel:
    if not isinstance(spec, dict):
        raise TokenizerError(f"{source}: missing \"model\"")
    if spec.get("type", "BPE") != "BPE":
        raise TokenizerError(f"{source}: model type {spec.get('type')!r} is not supported; supported: BPE")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if spec.get(key):
            raise TokenizerError(f"{source}: BPE {key} is not supported (byte-level BPE does not use it)")
    if spec.get("byte_fallback"):
        raise TokenizerError(f"{source}: BPE byte_fallback is not supported (byte-level BPE needs none)")
    if spec.get("dropout"):
        raise TokenizerError(f"{source}: BPE dropout is not supported (it makes encoding random)")
    vocab = spec.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerError(f"{source}: BPE model has no \"vocab\"")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in vocab.values()):
        raise TokenizerError(f"{source}: BPE vocab ids must be non-negative integers")
    if not isinstance(spec.get("merges"), list):
        raise TokenizerError(f"{source}: BPE model has no \"merges\"")
    unk = spec.get("unk_token")
    if unk is not None and (not isinstance(unk, str) or unk not in vocab):
        raise TokenizerError(f"{source}: unk_token {unk!r} is not in the vocab")
    return _BpeModel(
        vocab=vocab,
        merges=_read_merges(spec["merges"], vocab, source),
        unk_id=None if unk is None else vocab[unk],
        fuse_unk=bool(spec.get("fuse_unk")),
        ignore_merges=bool(spec.get("ignore_merges")),
    )


def _read_merges(merges: list, vocab: dict[str, int], source: str) -> dict:
    """Merges as "a b" strings (older files, GPT-NeoX) or ["a", "b"] pairs (tokenizers >= 0.20).

    Rank is the position in the list; a later duplicate overrides an earlier one, as HF's map does.
    """
    table: dict[tuple[int, int], tuple[int, int]] = {}
    lines = (m for m in merges if not (isinstance(m, str) and m.startswith("#version")))
    for rank, merge in enumerate(lines):
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise TokenizerError(f"{source}: merge {rank + 1} ({merge!r}) is not a pair of tokens")
        left, right = pair
        for token in (left, right, left + right):
            if token not in vocab:
                raise TokenizerError(
                    f"{source}: merge {rank + 1} ({left!r}, {right!r}) uses {token!r}, which is not in the vocab"
                )
        table[vocab[left], vocab[right]] = (rank, vocab[left + right])
    return table


def _read_added_tokens(specs, source: str) -> list[AddedToken]:
    if not isinstance(specs, list):
        raise TokenizerError(f"{source}: \"added_tokens\" must be a list")
    tokens = []
    for spec in specs:
        if not (isinstance(spec, dict) and _is_id(spec.get("id")) and isinstance(spec.get("content"), str)):
            raise TokenizerError(
                f"{source}: added token {_describe(spec)} needs a non-negative integer id and string content"
            )
        if not spec["content"]:
            continue  # HF ignores empty added tokens
        special = bool(spec.get("special", False))
        tokens.append(
            AddedToken(
                id=spec["id"],
                content=spec["content"],
                special=special,
                single_word=bool(spec.get("single_word", False)),
                lstrip=bool(spec.get("lstrip", False)),
                rstrip=bool(spec.get("rstrip", False)),
                normalized=bool(spec.get("normalized", not special)),
            )
        )
    return tokens


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tokenizer_size(size: int, source: str) -> None:
    if size > MAX_TOKENIZER_BYTES:
        raise TokenizerError(
            f"{source}: {size:,} bytes is too large for a tokenizer.json (the limit is "
            f"{MAX_TOKENIZER_BYTES:,} bytes; GPT-NeoX's is 2.1 MB): refused before parsing"
        )


def _describe(spec) -> str:
    if isinstance(spec, dict) and "type" in spec:
        return repr(spec["type"])
    return "null" if spec is None else repr(spec)[:80]


def _replace_lone_surrogates(text: str) -> str:
    """Text from JavaScript may hold unpaired surrogates, which have no UTF-8; replace them with
    U+FFFD as the browser's TextEncoder does (pairs written as two code units are joined)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
