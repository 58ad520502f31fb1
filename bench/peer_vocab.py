"""The tokens the peer (wllama) must never sample from a random model: those whose bytes alone are
not UTF-8.

A trained model follows a lead byte with its continuation bytes; a random one picks any token, and
wllama 3.13 fails on the text of a lone byte token such as 0x80 (`invalid UTF-8 byte`, then
`RangeError: Invalid typed array length`). Banning these ids (a logit bias of -1e9 each, bench/
peer_page/peer.js) makes every generated piece valid text. Our page decodes bytes with U+FFFD for
invalid sequences and needs no such list.
"""

from mamba_wasm.errors import InputError
from mamba_wasm.gguf import read_gguf
from mamba_wasm.tokenizer import Tokenizer


def not_utf8_alone(tokenizer):
    """Ids in 0..vocab_size-1 whose bytes alone do not decode as UTF-8, or that stand for no token."""
    banned = []
    for token_id in range(tokenizer.vocab_size):
        try:
            tokenizer.token_bytes(token_id).decode("utf-8")
        except (UnicodeDecodeError, InputError):
            banned.append(token_id)
    return banned


def banned_ids(gguf_path):
    """not_utf8_alone of the tokenizer in a .gguf file's metadata (its tensors are not read)."""
    with open(gguf_path, "rb") as file:
        data = file.read()
    return not_utf8_alone(Tokenizer.from_gguf(read_gguf(data, str(gguf_path), header_only=True)))
