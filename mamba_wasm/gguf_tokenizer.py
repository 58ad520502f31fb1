"""The tokenizer a .gguf file carries (`tokenizer.ggml.*` metadata), as the tokenizer.json it came from.

llama.cpp's converter (conversion/base.py, `_set_vocab_gpt2` and `get_vocab_base`) writes a
byte-level BPE tokenizer.json as:
    tokenizer.ggml.model       "gpt2" (byte-level BPE; "llama" would be SentencePiece)
    tokenizer.ggml.pre         the pre-tokenizer's name, found by hashing the ids of a test text:
                               GPT-NeoX's tokenizer (every Mamba's) is "mpt" (also the converter's
                               default for its built-in GPT-NeoX vocabulary) or "olmo"
    tokenizer.ggml.tokens      every id's token string, ids without one as "[PAD<id>]"
    tokenizer.ggml.token_type  per id: 1 normal, 3 control (special added token), 4 user-defined
                               (other added token, stored normalized), 5 unused (the [PAD] fillers)
    tokenizer.ggml.merges      "left right" strings, in rank order
`tokenizer_json_from_gguf` rebuilds the tokenizer.json so that tokenizer.py encodes with the very
rules HF `tokenizers` would apply to the original file (tests/test_gguf.py checks the ids):
  - the normalizer is not stored: GPT-NeoX's NFC is restored for its pre-tokenizer names, none for
    "gpt-2"'s family; other pre-tokenizers (other split regexes) are refused.
  - added tokens' flags are not stored: control tokens become special and not normalized,
    user-defined ones not special and normalized, both without lstrip / rstrip / single_word
    (GPT-NeoX's own added tokens have exactly these flags).
  - unused ids are left out, as the original file has no token for them.
  - merges that name a token outside the vocabulary are dropped: llama.cpp cannot apply them either
    (its built-in GPT-NeoX vocabulary cut to a tiny model's size keeps all 50k merges).
  - tokenizer.ggml.unknown_token_id is ignored: a byte-level BPE has a token for every byte.
"""

import numpy as np

from .errors import TokenizerError

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
# pre-tokenizer name -> NFC normalizer? All use GPT-2's split regex (llama.cpp llama-vocab.cpp).
PRE_TOKENIZERS = {"mpt": True, "olmo": True, "gpt-2": False}
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def tokenizer_json_from_gguf(gguf):
    """A tokenizer.json (as a dict) from a GGUFFile's metadata; TokenizerError names what is missing."""
    source, metadata = gguf.source, gguf.metadata
    model = metadata.get("tokenizer.ggml.model")
    if model is None:
        raise TokenizerError(f"{source}: the file holds no tokenizer (no tokenizer.ggml.model)")
    if model != "gpt2":
        raise TokenizerError(f"{source}: tokenizer model {model!r:.40} is not supported; supported: 'gpt2' (byte-level BPE)")
    pre = metadata.get("tokenizer.ggml.pre", "mpt")  # absent in files converted before llama.cpp named them
    if pre not in PRE_TOKENIZERS:
        supported = ", ".join(repr(name) for name in PRE_TOKENIZERS)
        raise TokenizerError(f"{source}: pre-tokenizer {pre!r:.40} is not supported (supported: {supported})")
    tokens = _list(metadata, "tokenizer.ggml.tokens", source)
    types = np.asarray(metadata.get("tokenizer.ggml.token_type", [NORMAL] * len(tokens)))
    if types.ndim != 1 or types.dtype.kind not in "iu":
        raise TokenizerError(f"{source}: tokenizer.ggml.token_type must be an array of integers")
    if len(types) != len(tokens):
        raise TokenizerError(f"{source}: {len(tokens)} tokens but {len(types)} token types")
    vocab, added = {}, []
    for token_id, (token, kind) in enumerate(zip(tokens, map(int, types))):
        if not isinstance(token, str):
            raise TokenizerError(f"{source}: tokenizer.ggml.tokens must hold strings")
        if kind == UNUSED:
            continue
        if kind not in (NORMAL, CONTROL, USER_DEFINED):
            raise TokenizerError(f"{source}: token {token_id} ({token!r:.40}) has type {kind}, which a byte-level BPE does not use")
        vocab.setdefault(token, token_id)
        if kind != NORMAL:
            added.append({
                "id": token_id, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": kind == USER_DEFINED, "special": kind == CONTROL,
            })
    add_prefix_space = bool(metadata.get("tokenizer.ggml.add_space_prefix", False))
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"} if PRE_TOKENIZERS[pre] else None,
        "pre_tokenizer": {**BYTE_LEVEL, "add_prefix_space": add_prefix_space},
        "post_processor": {**BYTE_LEVEL, "trim_offsets": False},
        "decoder": BYTE_LEVEL,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab,
            "merges": _merges(metadata, vocab, source),
        },
    }


def _merges(metadata, vocab, source):
    """[left, right] pairs, in rank order, of the merges whose three tokens are in the vocabulary."""
    pairs = []
    for i, merge in enumerate(_list(metadata, "tokenizer.ggml.merges", source)):
        split = merge.find(" ", 1) if isinstance(merge, str) else -1  # as llama.cpp: a token may start with " "
        if split < 0:
            raise TokenizerError(f"{source}: merge {i + 1} ({merge!r:.40}) is not two tokens separated by a space")
        left, right = merge[:split], merge[split + 1 :]
        if left in vocab and right in vocab and left + right in vocab:
            pairs.append([left, right])
    return pairs


def _list(metadata, key, source):
    if key not in metadata:
        raise TokenizerError(f"{source}: missing metadata {key!r}")
    value = metadata[key]
    if isinstance(value, (str, int, float)):
        raise TokenizerError(f"{source}: metadata {key!r} must be an array")
    return value
