"""Generation: a prompt in, complete pieces of text out, one token at a time.

`Session` is the resumable form the web worker drives in small batches (so a Stop message
can land between two tokens, or two blocks of a long prompt); `generate` is the plain Python
generator built on it.

Because Mamba's state has a fixed size, the state right after the prompt is kept: starting
again with the same prompt (Regenerate) restores it instead of running the prompt again.
"""

import time
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from .branching import History
from .detokenizer import StreamingDetokenizer
from .errors import InputError
from .guards import check_token
from .sampling import Sampler, SamplingParams
from .token_probabilities import token_probabilities

MAX_PROMPT_TOKENS = 65536  # ~250k characters: beyond it, prefill time is the user's real problem
PREFILL_BLOCK = 256  # prompt tokens run through all layers at once: bounds prefill memory


@dataclass(frozen=True)
class Request:
    """What the latest `begin` asked for; used once its prompt has run."""
    params: SamplingParams
    max_new_tokens: int
    stop_at_eos: bool  # False: end-of-text is generated like any other token


@dataclass
class PromptRun:
    """A prompt tokenized a slice at a time, then run a block at a time; once finished, kept so the
    same prompt again (Regenerate) restores the state after it instead of running it again."""
    text: str
    slices: Optional[Iterator]  # tokenizer.encode_steps(text) while tokenizing; None once ids is whole
    ids: list
    state: object  # the model's state after ids[:position]
    position: int = 0  # the next prompt id to run
    logits: Optional[np.ndarray] = None  # (v,) next-token logits, padding masked; set when finished

    @property
    def finished(self):
        return self.logits is not None


@dataclass
class Decoding:
    """A generation in progress. Its state is a copy: the prompt's must stay as it was for Regenerate."""
    state: object
    logits: np.ndarray  # (v,) for the next token
    seen: set  # ids the repetition penalty applies to
    sampler: Sampler
    detokenizer: StreamingDetokenizer
    eos: Optional[int]  # the token that ends generation; None when stop_at_eos is False
    history: Optional[History]  # what `branch` restarts from; None unless the Session snapshots


class Session:
    """One model and tokenizer generating text, resumable between any two tokens.

        session = Session(model, tokenizer)
        session.start("ROMEO.", 100, temperature=0.8, seed=11)   # runs the prompt
        while not session.done:
            print(session.advance(1), end="")                     # complete UTF-8 text per call

    `start` (or `begin` + `prefill_step`) takes the sampling keywords of SamplingParams:
    temperature (0 greedy), top_k, top_p, repetition_penalty, seed. `extend(n)` continues a
    stopped or finished generation. Read n_prompt, n_generated, generated_ids, done.

    With record_probabilities=True, `token_probabilities[i]` is the TokenProbabilities of
    generated_ids[i] (its probability as sampled and under the raw model, and 10 alternatives);
    off, nothing of it is computed. Recording never changes the text.

    With snapshot_every=N, `branch(t, token)` continues from generated token t with another
    token, from the state snapshot at or before t (one every N tokens, see branching.py).
    """

    def __init__(self, model, tokenizer, record_probabilities=False, snapshot_every=None):
        if snapshot_every is not None and (isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int)
                                           or snapshot_every < 1):
            raise InputError(f"snapshot_every must be a positive integer or None, got {snapshot_every!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.record_probabilities = record_probabilities
        self.snapshot_every = snapshot_every
        self.n_prompt = 0
        self.generated_ids = []
        self.token_probabilities = []  # TokenProbabilities per generated id, when recording
        self.max_new_tokens = 0
        self.done = True
        self.prompt_state_reused = False
        self.n_prefilled = 0  # prompt tokens the model ran for the latest prompt (0 when its state was reused)
        self.prefill_seconds = 0.0
        self._request = None  # Request of the latest begin
        self._prompt = None  # PromptRun of the latest prompt: running, or finished and kept
        self._decoding = None  # Decoding once the latest prompt has run

    def start(self, prompt, max_new_tokens=200, stop_at_eos=True, **sampling):
        """Run the prompt (or restore its saved state) and get ready to generate.

        `sampling` holds SamplingParams fields. With stop_at_eos False, an end-of-text token is
        generated like any other (benchmarks need an exact length). Returns the number of prompt tokens.
        """
        self.begin(prompt, max_new_tokens, stop_at_eos, **sampling)
        while not self.prefill_step():
            pass
        return self.n_prompt

    def begin(self, prompt, max_new_tokens=200, stop_at_eos=True, **sampling):
        """`start` in pieces, so a caller can stop a long prompt between two steps: check the
        arguments here, then call prefill_step() until it returns True (n_prompt is set by then)."""
        params = SamplingParams(**sampling)
        if not isinstance(prompt, str):
            raise InputError(f"the prompt must be text (a str), got {type(prompt).__name__}; "
                             "to start from token ids, use model.prefill(ids, state) and model.step")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if not prompt:
            raise InputError("the prompt is empty: type some text to continue")
        began = time.perf_counter()
        self.prompt_state_reused = self._prompt is not None and self._prompt.finished and self._prompt.text == prompt
        self._request = Request(params, max_new_tokens, stop_at_eos)
        self.generated_ids, self.token_probabilities, self.done, self._decoding = [], [], True, None  # nothing to generate yet
        self.n_prefilled = 0
        if not self.prompt_state_reused:
            self._prompt = PromptRun(prompt, self.tokenizer.encode_steps(prompt), [], self.model.new_state())
            self.n_prompt = 0  # known once the prompt is tokenized, in prefill_step
        self.prefill_seconds = time.perf_counter() - began

    def prefill_step(self):
        """Tokenize the next slice of the prompt or, once it is tokenized, run its next PREFILL_BLOCK
        tokens; True once the prompt has run and tokens can be generated (at once when its state was
        reused). Each call is bounded work: a million-character prompt is many calls, not one."""
        began = time.perf_counter()
        prompt = self._prompt
        if prompt.slices is not None:
            ids = next(prompt.slices, None)
            if ids is not None:
                prompt.ids.extend(ids)
                if len(prompt.ids) > MAX_PROMPT_TOKENS:
                    raise InputError(f"the prompt has more than {MAX_PROMPT_TOKENS} tokens (tokenizing stopped at {len(prompt.ids)}); the limit is {MAX_PROMPT_TOKENS}")
                self.prefill_seconds += time.perf_counter() - began
                return False
            prompt.slices = None
            self.n_prompt = len(prompt.ids)
        if not prompt.finished:
            block = prompt.ids[prompt.position : prompt.position + PREFILL_BLOCK]
            logits = self.model.prefill(block, prompt.state)
            prompt.position += PREFILL_BLOCK
            self.n_prefilled += len(block)
            if prompt.position < len(prompt.ids):
                self.prefill_seconds += time.perf_counter() - began
                return False
            prompt.logits = self._mask_padding(logits)
        request = self._request
        self.max_new_tokens = request.max_new_tokens
        self._decoding = Decoding(
            state=prompt.state.copy(),
            logits=prompt.logits,
            seen=set(prompt.ids),
            sampler=Sampler(request.params),
            detokenizer=StreamingDetokenizer(self.tokenizer),
            eos=self.tokenizer.eos_token_id if request.stop_at_eos else None,
            history=History(self.snapshot_every) if self.snapshot_every else None,
        )
        self.done = False
        self.prefill_seconds += time.perf_counter() - began
        return True

    def advance(self, n_tokens=1):
        """Generate up to n_tokens more; returns the new text (possibly empty)."""
        pieces = []
        decoding = self._decoding
        for _ in range(n_tokens):
            if self.done:
                break
            if decoding.history is not None:
                decoding.history.record(self.n_generated, decoding.state, decoding.logits, decoding.sampler.rng)
            token = decoding.sampler(decoding.logits, decoding.seen)
            if self.record_probabilities:
                self.token_probabilities.append(token_probabilities(decoding.sampler, decoding.logits, decoding.seen, token))
            self.generated_ids.append(token)
            if token == decoding.eos:
                self.done = True
                break
            pieces.append(decoding.detokenizer.push(token))
            decoding.seen.add(token)
            decoding.logits = self._mask_padding(self.model.step(token, decoding.state))
            self.done = self.n_generated >= self.max_new_tokens
        if self.done and decoding is not None:
            pieces.append(decoding.detokenizer.flush())
        return "".join(pieces)

    def extend(self, more_tokens):
        """Continue a stopped or finished generation for up to `more_tokens` more tokens."""
        if self._decoding is None:
            raise InputError("nothing to continue: generate first")
        if isinstance(more_tokens, bool) or not isinstance(more_tokens, int) or more_tokens < 1:
            raise InputError(f"more_tokens must be a positive integer, got {more_tokens!r}")
        self.max_new_tokens = self.n_generated + more_tokens
        self.done = False

    def branch(self, position, token):
        """Replace generated token `position` by `token` and continue from there: the tokens after
        it are dropped, advance() generates new ones (up to the same max_new_tokens). Replays at
        most snapshot_every-1 tokens, never the prompt. Returns the generated text up to and
        including `token`, which replaces all generated text so far."""
        decoding = self._decoding
        if decoding is None or decoding.history is None:
            raise InputError("nothing to branch from: make the Session with snapshot_every=N and generate first")
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < self.n_generated:
            raise InputError(f"position must be the index of a generated token, in [0, {self.n_generated}), got {position!r}")
        token = check_token(token, self.tokenizer.vocab_size)
        history, kept = decoding.history, self.generated_ids[:position]
        snapshot = history.nearest(position)
        state, logits = snapshot.state.copy(), snapshot.logits
        for replayed in kept[snapshot.position :]:
            logits = self._mask_padding(self.model.step(replayed, state))
        seen = set(self._prompt.ids) | set(kept)
        sampler = decoding.sampler
        sampler.rng.bit_generator.state = history.rng_states[position]
        if self.record_probabilities:
            self.token_probabilities[position:] = [token_probabilities(sampler, logits, seen, token)]
        sampler(logits, seen)  # the draw `token` replaces: later draws continue as after a forced token
        history.truncate(position)
        self.generated_ids = kept + [token]
        detokenizer = StreamingDetokenizer(self.tokenizer)
        pieces = [detokenizer.push(t) for t in kept]
        decoding.state, decoding.logits, decoding.seen, decoding.detokenizer = state, logits, seen, detokenizer
        if token == decoding.eos:
            self.done = True
        else:
            pieces.append(detokenizer.push(token))
            seen.add(token)
            decoding.logits = self._mask_padding(self.model.step(token, state))
            self.done = self.n_generated >= self.max_new_tokens
        if self.done:
            pieces.append(detokenizer.flush())
        return "".join(pieces)

    @property
    def n_generated(self):
        return len(self.generated_ids)

    @property
    def state_nbytes(self):
        return self.model.state_nbytes

    def _mask_padding(self, logits):
        """Rows past the tokenizer's vocabulary (padding to a multiple of 8) are never sampled."""
        n = self.tokenizer.vocab_size
        if n < logits.shape[0]:
            logits = logits.copy()
            logits[n:] = -np.inf
        return logits


def generate(model, tokenizer, prompt, max_new_tokens=200, **sampling):
    """Yield the continuation of the text `prompt` (not including it) as pieces of complete
    UTF-8 text, up to max_new_tokens tokens; stops early at the tokenizer's end-of-text token.

    `sampling` takes SamplingParams' keywords: temperature (default 0.8; 0 is greedy), top_k
    (0: no limit), top_p (1.0: no nucleus filter), repetition_penalty (1.0: none), seed (None:
    fresh). Bad arguments raise InputError when iteration begins, before any text.
    """
    session = Session(model, tokenizer)
    session.start(prompt, max_new_tokens, **sampling)
    while not session.done:
        piece = session.advance(1)
        if piece:
            yield piece
