"""Token ids in, complete text out: the streaming half of `Tokenizer.decode`.

A byte-level BPE token can end in the middle of a UTF-8 character (an emoji is often two or
three tokens), so decoding each token on its own would show U+FFFD and then the wrong text.
We keep the bytes of an unfinished character until the tokens that complete it arrive, using
the standard library's incremental UTF-8 decoder: it returns every complete character, holds
back only a trailing sequence that could still become valid, and replaces bytes that can never
become valid as soon as that is certain, exactly as a one-shot decode would. So the pieces
join up to `tokenizer.decode(all ids)`, at O(1) work per token.
"""

import codecs


class StreamingDetokenizer:
    """push(token_id) -> the text that token completes (may be ""); flush() -> whatever is left."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        """End of stream: an unfinished character becomes U+FFFD, as decode would show it.
        The detokenizer is then ready for a new stream."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text
