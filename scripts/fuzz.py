"""Fuzz the package's input boundaries: only documented errors (MambaWasmError) may escape.

    python3 scripts/fuzz.py --seconds 60            # atheris (coverage-guided) if installed,
                                                    # else hypothesis for the same time
    python3 scripts/fuzz.py --seconds 60 --engine hypothesis
    python3 scripts/fuzz.py --reproduce crash-FILE  # rerun one input atheris saved

Targets, each fed the same fuzz bytes through `Choices` (so atheris and hypothesis drive one code path):
    safetensors    a valid file mutated: bit flips, truncation, header-length edits, JSON edits
                   (dtype, shape, offsets, metadata, deep nesting) -> read_safetensors, to_float32
    checkpoint     a tiny valid checkpoint (HF, original layout, F16/BF16, sharded) with its
                   config.json, index or tensors edited -> load_model_from_files, one model step
    tokenizer      models/tiny-random/tokenizer.json with JSON edits -> Tokenizer, encode, decode
    gguf           a llama.cpp .gguf fixture with byte edits and 64-bit counts, lengths, offsets
                   overwritten -> read_gguf, Tokenizer.from_gguf, load_gguf_model, one model step
    encode         arbitrary Unicode (lone surrogates, NUL, RTL marks, added tokens) -> encode;
                   decode(encode(text)) must give the text back when it is NFC
    decode         arbitrary id lists (negative, huge, floats, strings) -> decode
    detokenizer    StreamingDetokenizer's pieces must join up to decode(ids), bad ids included
    session        Session.start/advance on models/tiny-random with fuzzed prompts and sampling

A crash is any other exception, a failed check, or (under atheris) an input slower than --timeout.
"""

import argparse
import json
import random
import signal
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mamba_wasm  # noqa: E402
from mamba_wasm import MambaWasmError, Session, StreamingDetokenizer, Tokenizer  # noqa: E402
from mamba_wasm.checkpoint import load_model_from_files  # noqa: E402
from mamba_wasm.gguf import read_gguf  # noqa: E402
from mamba_wasm.gguf_checkpoint import load_gguf_model  # noqa: E402
from mamba_wasm.safetensors import BFLOAT16, DTYPE_NAMES, DTYPES, read_safetensors, safetensors_bytes, to_float32  # noqa: E402

TINY_RANDOM = ROOT / "models" / "tiny-random"
GGUF_FIXTURES = [ROOT / "tests" / "fixtures" / "gguf" / name for name in ("hf_tied_bias-Q4_0.gguf", "bf16-BF16.gguf")]


# ---------------------------------------------------------------------------------------------
# Fuzz bytes -> decisions
# ---------------------------------------------------------------------------------------------


class Choices:
    """Reads decisions from fuzz bytes, like atheris.FuzzedDataProvider but pure Python so every
    engine drives the same targets. Exhausted input reads as zeros (the first option)."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def _take(self, n):
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def int(self, low, high):
        """An integer in [low, high]."""
        span = high - low
        raw = self._take((span.bit_length() + 7) // 8)
        return low + int.from_bytes(raw, "little") % (span + 1)

    def pick(self, options):
        return options[self.int(0, len(options) - 1)]

    def bool(self):
        return self.int(0, 1) == 1

    def raw(self, max_len):
        return self._take(self.int(0, max_len))

    def text(self, max_len):
        return "".join(self.char() for _ in range(self.int(0, max_len)))

    def char(self):
        kind = self.int(0, 5)
        if kind == 0:
            return chr(self.int(0x20, 0x7E))
        if kind == 1:
            return chr(self.int(0, 0x10FFFF))  # surrogates included
        if kind == 2:
            return self.pick(TRICKY_TEXT)
        if kind == 3:
            return chr(self.int(0x80, 0x2FFF))
        return self.pick(" \t\n\r\0'se\u0301a\u030a")


TRICKY_TEXT = [
    "<|endoftext|>", "<|padding|>", "<|endoftext", "\ud800", "\udfff", "\ud83d\ude00", "\U0001F600",
    "\u200f", "\u202e", "\u200b", "\ufeff", "\ufffd", "\u0000", "\u2028", "\u3000", "  ", "    ",
    "'s", "'LL", "A\u030a", "\u1100\u1161\u11a8", "\u0958", "\U0001E94B", "\U000E0001",
]  # added tokens (whole and cut), surrogates, RTL/zero-width/BOM marks, NUL, composing sequences

# Values an edit puts into JSON: boundaries, wrong types, and names the readers switch on.
# "<deep>" is replaced by a deeply nested list after serialising (json.dumps would recurse).
INTERESTING = [
    0, 1, -1, 2, 3, 7, 255, 2**31, 2**53 + 1, 2**63, 2**64, 10**30, 10**400, 1.5, -0.0, 1e-300, 1e308,
    float("nan"), float("inf"), "", "x", "auto", "F32", "F16", "BF16", "I32", "U8", "F8_E4M3",
    "BPE", "WordPiece", "Unigram", "NFC", "NFKC", "Sequence", "ByteLevel", "Metaspace", "<|endoftext|>",
    None, True, False, [], [0], [1, 2], [2**62, 2**62], [0, 2**70], [1] * 40, [-1], [1.0], ["1"], [[]],
    {}, {"type": None}, {"type": "ByteLevel"}, {"type": "Sequence", "pretokenizers": {"a": 1}},
    "<deep>",
]
DEEP_MARK = '"<deep>"'


def interesting(c: Choices):
    return c.pick(INTERESTING) if c.int(0, 3) else c.int(-(2**70), 2**70)


def dump_json(value, c: Choices) -> bytes:
    text = json.dumps(value)
    if DEEP_MARK in text:
        depth = c.pick([10, 1000, 100_000])
        text = text.replace(DEEP_MARK, "[" * depth + "]" * depth)
    return text.encode()


def mutate_json(value, c: Choices, depth=0):
    """A copy of a JSON value with one edit somewhere (containers copied along the path only)."""
    descend = depth < 6 and c.int(0, 3) > 0
    if isinstance(value, dict) and value:
        keys = list(value)
        key = keys[c.int(0, len(keys) - 1)]
        if descend:
            return {**value, key: mutate_json(value[key], c, depth + 1)}
        op = c.int(0, 2)
        if op == 0:
            return {k: v for k, v in value.items() if k != key}
        if op == 1:
            return {**value, c.pick([key, "x", "", "__metadata__", "type"]): interesting(c)}
        return interesting(c)
    if isinstance(value, list) and value:
        i = c.int(0, len(value) - 1)
        if descend:
            return value[:i] + [mutate_json(value[i], c, depth + 1)] + value[i + 1 :]
        op = c.int(0, 3)
        if op == 0:
            return value[:i] + value[i + 1 :]
        if op == 1:
            return value + [interesting(c)]
        if op == 2:
            return value[:i]
        return interesting(c)
    return interesting(c)


def mutate_bytes(data: bytes, c: Choices) -> bytes:
    """One byte-level edit: flip bits, truncate, insert, overwrite the 8-byte length prefix."""
    if not data:
        return c.raw(16)
    op = c.int(0, 4)
    at = c.int(0, len(data) - 1)
    if op == 0:
        return data[:at] + bytes([data[at] ^ (1 << c.int(0, 7))]) + data[at + 1 :]
    if op == 1:
        return data[:at]
    if op == 2:
        return data[:at] + c.raw(16) + data[at:]
    if op == 3:
        return data[:at] + data[at + c.int(1, 64) :]
    length = c.pick([0, 1, 2, len(data) - 8, len(data) - 7, len(data), 100_000_000, 100_000_001, 2**63, 2**64 - 1])
    return max(0, length).to_bytes(8, "little") + data[8:]


# ---------------------------------------------------------------------------------------------
# Valid inputs to start from
# ---------------------------------------------------------------------------------------------


def _small_files():
    rng = np.random.default_rng(0)
    mixed = {
        "a": rng.standard_normal((2, 3)).astype(np.float32),
        "b": rng.standard_normal(5).astype(np.float16),
        "c": rng.integers(0, 2**16, (3,), dtype=np.uint16).view(BFLOAT16),
        "d": np.arange(4, dtype=np.int64),
        "e": np.zeros((0, 3), np.float32),
        "f": np.array(True),
    }
    return [
        safetensors_bytes(mixed, {"format": "np"}),
        safetensors_bytes({"x": np.float32(1.0).reshape(())}),
        safetensors_bytes({}),
    ]


HF_CONFIG = dict(hidden_size=4, num_hidden_layers=2, vocab_size=6, state_size=2, expand=2, conv_kernel=2,
                 time_step_rank=1, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)
ORIGINAL_CONFIG = dict(d_model=4, n_layer=2, vocab_size=5, pad_vocab_size_multiple=3,
                       ssm_cfg=dict(d_state=2, d_conv=2, expand=2, dt_rank=1), tie_embeddings=True)


def checkpoint_tensors(embedding_key, dtype):
    d, d_in, v, n, k, r = 4, 8, 6, 2, 2, 1
    shapes = {embedding_key: (v, d), "backbone.norm_f.weight": (d,)}
    for i in range(2):
        p = f"backbone.layers.{i}."
        shapes.update({
            p + "norm.weight": (d,), p + "mixer.in_proj.weight": (2 * d_in, d), p + "mixer.conv1d.weight": (d_in, 1, k),
            p + "mixer.conv1d.bias": (d_in,), p + "mixer.x_proj.weight": (r + 2 * n, d_in),
            p + "mixer.dt_proj.weight": (d_in, r), p + "mixer.dt_proj.bias": (d_in,), p + "mixer.A_log": (d_in, n),
            p + "mixer.D": (d_in,), p + "mixer.out_proj.weight": (d, d_in),
        })
    rng = np.random.default_rng(1)
    tensors = {name: (rng.standard_normal(shape) * 0.5).astype(np.float32) for name, shape in shapes.items()}
    if dtype == "BF16":
        return {name: (a.view(np.uint32) >> 16).astype(np.uint16).view(BFLOAT16) for name, a in tensors.items()}
    return {name: a.astype(DTYPES[dtype]) for name, a in tensors.items()}


def _checkpoints():
    """(config dict, {name: array}, shard count) for each layout and dtype the loader accepts."""
    return [
        (HF_CONFIG, checkpoint_tensors("backbone.embeddings.weight", "F32"), 1),
        (HF_CONFIG, checkpoint_tensors("backbone.embeddings.weight", "F16"), 2),
        (HF_CONFIG, checkpoint_tensors("backbone.embeddings.weight", "BF16"), 1),
        (ORIGINAL_CONFIG, checkpoint_tensors("backbone.embedding.weight", "F32"), 1),
    ]


class Fixtures:
    """Built once per process: inputs to mutate, and the tiny-random model and tokenizer."""

    def __init__(self):
        self.safetensors_files = _small_files()
        self.checkpoints = _checkpoints()
        self.gguf_files = [path.read_bytes() for path in GGUF_FIXTURES]
        self.tokenizer_json = json.loads((TINY_RANDOM / "tokenizer.json").read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.from_file(TINY_RANDOM / "tokenizer.json")
        self.model = mamba_wasm.load_model(TINY_RANDOM)
        self.session = Session(self.model, self.tokenizer)


_fixtures = None


def fixtures() -> Fixtures:
    global _fixtures
    if _fixtures is None:
        _fixtures = Fixtures()
    return _fixtures


# ---------------------------------------------------------------------------------------------
# Targets: each may raise MambaWasmError; anything else is a crash
# ---------------------------------------------------------------------------------------------


def fuzz_safetensors(c: Choices):
    data = c.pick(fixtures().safetensors_files)
    if c.int(0, 3):
        data = _mutate_safetensors_header(data, c)
    for _ in range(c.int(0, 2)):
        data = mutate_bytes(data, c)
    tensors = read_safetensors(c.pick([bytes, bytearray, memoryview])(data), "fuzz.safetensors")
    for name, array in tensors.items():
        assert isinstance(name, str) and isinstance(array, np.ndarray), name
        if array.dtype.kind == "f" or array.dtype == BFLOAT16:
            assert to_float32(array).shape == array.shape


def _mutate_safetensors_header(data: bytes, c: Choices) -> bytes:
    """Edit a valid file's JSON header, then write the length prefix for the new header (usually)."""
    header_len = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8 : 8 + header_len]), data[8 + header_len :]
    for _ in range(c.int(1, 2)):
        if isinstance(header, dict) and header and c.int(0, 2):
            header = _mutate_header_entry(header, c)
        else:
            header = mutate_json(header, c)
    text = dump_json(header, c)
    length = len(text) if c.int(0, 3) else c.int(0, len(text) + 16)
    return length.to_bytes(8, "little") + text + body


def _mutate_header_entry(header, c: Choices):
    """Set one field of one tensor's entry to an interesting value."""
    name = c.pick(list(header))
    if name == "__metadata__" or not isinstance(header[name], dict):
        return mutate_json(header, c)
    entry = dict(header[name])
    entry[c.pick(["dtype", "shape", "data_offsets"])] = interesting(c)
    return {**header, name: entry}


def fuzz_checkpoint(c: Choices):
    config, tensors, shards = c.pick(fixtures().checkpoints)
    tensors = dict(tensors)
    config = mutate_json(config, c) if c.bool() else config
    for _ in range(c.int(0, 2)):
        _mutate_tensors(tensors, c)
    files = {"config.json": dump_json(config, c)}
    if shards == 1:
        files["model.safetensors"] = safetensors_bytes(tensors)
    else:
        names = list(tensors)
        weight_map = {name: f"model-0000{1 + i % shards}-of-0000{shards}.safetensors" for i, name in enumerate(names)}
        for shard in set(weight_map.values()):
            files[shard] = safetensors_bytes({n: tensors[n] for n in names if weight_map[n] == shard})
        index = {"metadata": {}, "weight_map": weight_map}
        files["model.safetensors.index.json"] = dump_json(mutate_json(index, c) if c.bool() else index, c)
    if c.int(0, 3) == 0:
        name = c.pick(sorted(files))
        if c.bool():
            files[name] = mutate_bytes(files[name], c)
        else:
            del files[name]
    model = load_model_from_files(files, "fuzz")
    state = model.new_state()
    model.step(c.int(0, model.config.vocab_size - 1), state)


def _mutate_tensors(tensors, c: Choices):
    name = c.pick(sorted(tensors))
    op = c.int(0, 5)
    array = tensors[name]
    if op == 0:
        del tensors[name]
    elif op == 1:
        tensors[name] = array.reshape(-1)
    elif op == 2:
        tensors[name] = np.zeros(array.shape, c.pick([np.float64, np.int32, np.uint8, np.bool_]))
    elif op == 3 and array.size:
        poked = to_float32(array).astype(np.float32)  # a copy
        poked.reshape(-1)[c.int(0, array.size - 1)] = c.pick([np.nan, np.inf, -np.inf, 1e30, 0.0])
        tensors[name] = poked
    elif op == 4:
        tensors[c.pick(["lm_head.weight", "backbone.layers.2.norm.weight", "extra"])] = np.ones((6, 4), np.float32)
    else:
        tensors[name] = np.zeros((0,) + array.shape[1:], np.float32)


def fuzz_gguf(c: Choices):
    data = c.pick(fixtures().gguf_files)
    for _ in range(c.int(1, 3)):
        data = _overwrite_gguf_number(data, c) if c.bool() else mutate_bytes(data, c)
    parsed = read_gguf(c.pick([bytes, bytearray, memoryview])(data), "fuzz.gguf")
    try:
        Tokenizer.from_gguf(parsed).encode("Hi <|endoftext|> there")
    except MambaWasmError:
        pass
    model = load_gguf_model(parsed)
    model.step(0, model.new_state())


def _overwrite_gguf_number(data: bytes, c: Choices) -> bytes:
    """Put an extreme 64-bit value where a count, length, dimension or offset may be (header and
    tables lie in the first few KB)."""
    at = c.int(0, min(len(data), 4096) - 1)
    value = c.pick([0, 1, 3, 31, 33, len(data), len(data) + 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1])
    return data[:at] + value.to_bytes(8, "little") + data[at + 8 :]


def fuzz_tokenizer_json(c: Choices):
    spec = fixtures().tokenizer_json
    for _ in range(c.int(1, 3)):
        if c.int(0, 3) == 0:
            added = {"id": c.int(0, 520), "content": c.text(4), "special": c.bool(), "single_word": c.bool(),
                     "lstrip": c.bool(), "rstrip": c.bool(), "normalized": c.bool()}
            if isinstance(spec, dict) and isinstance(spec.get("added_tokens", []), list):
                spec = {**spec, "added_tokens": spec.get("added_tokens", []) + [added]}
        else:
            spec = mutate_json(spec, c)
    text = dump_json(spec, c)
    if c.int(0, 7) == 0:
        text = mutate_bytes(text, c)
    tokenizer = Tokenizer.from_json(text if c.bool() else text.decode("utf-8", "replace"), "fuzz/tokenizer.json")
    ids = tokenizer.encode(c.text(24))
    assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for i in ids), ids
    assert isinstance(tokenizer.decode(ids), str)
    _check_stream(tokenizer, ids)


def fuzz_encode(c: Choices):
    tokenizer = fixtures().tokenizer
    text = c.text(64)
    ids = tokenizer.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for i in ids), ids
    decoded = tokenizer.decode(ids)
    has_surrogates = any("\ud800" <= ch <= "\udfff" for ch in text)
    if not has_surrogates and unicodedata.is_normalized("NFC", text):
        assert decoded == text, (text, ids, decoded)


def fuzz_decode(c: Choices):
    tokenizer = fixtures().tokenizer
    ids = [_token_id(c) for _ in range(c.int(0, 16))]
    assert isinstance(tokenizer.decode(ids), str)


def _token_id(c: Choices):
    kind = c.int(0, 7)
    if kind < 4:
        return c.int(0, 520)
    return c.pick([-1, 512, 2**63, -(2**70), np.int64(5), np.uint8(3), np.int32(-2), 2.0, "3", None, True, b"\x01",
                   [1]])


def fuzz_detokenizer(c: Choices):
    ids = [_token_id(c) if c.int(0, 15) == 0 else c.int(0, 511) for _ in range(c.int(0, 24))]
    _check_stream(fixtures().tokenizer, ids)


def _check_stream(tokenizer, ids):
    """Pushing ids one by one must join up to decode(ids); a bad id is refused and skipped."""
    detok = StreamingDetokenizer(tokenizer)
    pieces, good = [], []
    for token_id in ids:
        try:
            pieces.append(detok.push(token_id))
            good.append(token_id)
        except MambaWasmError:
            continue
    pieces.append(detok.flush())
    assert "".join(pieces) == tokenizer.decode(good), (ids, pieces)


def fuzz_session(c: Choices):
    session = fixtures().session
    sampling = {}
    for key in ("temperature", "top_k", "top_p", "repetition_penalty", "seed"):
        if c.int(0, 2) == 0:
            sampling[key] = c.pick([0, 0.0, 1, 0.5, 2, 1e-9, 1e9, -1, float("nan"), float("inf"), 2**70, None, "1",
                                    True])
    prompt = c.text(32) if c.int(0, 7) else c.pick(["", "<|endoftext|>" * 2, "\ud800", "\0"])
    max_new = c.pick([1, 3, 8, 0, -1, 2.5, None, True])
    session.start(prompt, max_new, **sampling)
    steps = 0
    while not session.done and steps < 20:
        assert isinstance(session.advance(c.int(0, 3)), str)
        steps += 1


TARGETS = {
    "safetensors": fuzz_safetensors,
    "checkpoint": fuzz_checkpoint,
    "tokenizer": fuzz_tokenizer_json,
    "gguf": fuzz_gguf,
    "encode": fuzz_encode,
    "decode": fuzz_decode,
    "detokenizer": fuzz_detokenizer,
    "session": fuzz_session,
}


def run_one(data: bytes, targets=tuple(TARGETS)):
    """Run the target the first fuzz byte names on the rest; documented errors are fine."""
    c = Choices(data)
    target = TARGETS[targets[c.int(0, len(targets) - 1)]]
    try:
        target(c)
    except MambaWasmError:
        pass


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------


def run_atheris(seconds, timeout, targets, extra):
    import atheris

    fixtures()
    atheris.instrument_func(run_one)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("mamba_wasm") or module is sys.modules[__name__]:
            for value in vars(module).values():
                _instrument(atheris, value)
    # libFuzzer prints "Done N runs in S second(s)" and exits; on a crash it saves the input
    # as crash-<sha1> (rerun it with --reproduce) and exits non-zero.
    args = [sys.argv[0], f"-max_total_time={seconds}", f"-timeout={timeout}", "-rss_limit_mb=4096",
            "-max_len=2048", *extra]
    atheris.Setup(args, lambda data: run_one(data, targets))
    atheris.Fuzz()


def _instrument(atheris, value):
    module = getattr(value, "__module__", "") or ""
    if not (module.startswith("mamba_wasm") or module == __name__):
        return
    if isinstance(value, type):
        for member in vars(value).values():
            if hasattr(member, "__code__"):
                atheris.instrument_func(member)
    elif hasattr(value, "__code__"):
        atheris.instrument_func(value)


def run_hypothesis(seconds, timeout, targets, seed=0, max_examples=300):
    """Batches of hypothesis examples (random bytes, shrunk on failure) until the time is up."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    fixtures()
    counter = {"n": 0}
    deadline = time.monotonic() + seconds
    batch = seed
    while time.monotonic() < deadline:

        @hypothesis_seed(batch)
        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(st.binary(max_size=512))
        def check(data):
            counter["n"] += 1
            with _time_limit(timeout):
                run_one(data, targets)

        check()
        batch += 1
    return counter["n"]


class Hang(Exception):
    """An input ran longer than the per-input time limit."""


class _time_limit:
    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        if hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        if hasattr(signal, "SIGALRM"):
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _expired(self, *_):
        raise Hang(f"one input ran longer than {self.seconds} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of: " + ", ".join(TARGETS))
    parser.add_argument("--reproduce", metavar="FILE", help="run one saved input and show its traceback")
    args, extra = parser.parse_known_args()
    targets = tuple(args.targets.split(","))
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    if args.reproduce:
        run_one(Path(args.reproduce).read_bytes(), targets)
        print("no crash")
        return
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    if engine == "atheris":
        run_atheris(args.seconds, args.timeout, targets, extra)
    else:
        started = time.monotonic()
        n = run_hypothesis(args.seconds, args.timeout, targets, seed=random.randrange(2**32))
        print(f"hypothesis: {n} executions in {time.monotonic() - started:.0f} s, no crash")


if __name__ == "__main__":
    main()
