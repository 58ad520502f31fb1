"""Command line: `mamba-wasm generate [MODEL_DIR] --prompt TEXT` (or `python -m mamba_wasm ...`)
streams the prompt and its continuation to stdout; `mamba-wasm score [MODEL_DIR] --text TEXT`
prints how many nats each token of a text costs the model."""

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .checkpoint import from_pretrained
from .errors import MambaWasmError
from .generation import Session
from .sampling import SamplingParams
from .scoring import score

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULTS = SamplingParams()
EXAMPLE = 'mamba-wasm generate models/shakespeare --prompt "ROMEO." --temperature 0.8 --seed 11'


class CommandError(Exception):
    """A problem with what was typed: printed as `error: ...` without a traceback."""


def default_model_dir():
    """The model the page loads by default (models/index.json's "default"), when the package runs
    from a checkout of the repository; None when installed elsewhere."""
    try:
        index = json.loads((MODELS_DIR / "index.json").read_text())
        entry = next(m for m in index["models"] if m["name"] == index["default"])
        return str(MODELS_DIR / entry.get("path", entry["name"]))
    except (OSError, ValueError, KeyError, StopIteration):
        return None


def finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def count(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def add_model_dir(command, default):
    """The optional MODEL_DIR argument both commands take; its default is the model beside the package."""
    command.add_argument("model_dir", nargs="?", default=default, metavar="MODEL_DIR",
                         help="folder with config.json, model.safetensors (or shards) and tokenizer.json, or one llama.cpp .gguf file"
                              + (" (default: %(default)s)" if default else " (required: no default model beside the package)"))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="mamba-wasm", description=__doc__,
                                     epilog=f"example: {EXAMPLE}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = commands.add_parser(
        "generate", help="stream a continuation of a prompt",
        description="Stream the prompt and a sampled continuation to stdout. Sampling follows "
                    "transformers: repetition penalty, then temperature, top-k, top-p.",
        epilog=f"example: {EXAMPLE}")
    model_default = default_model_dir()
    add_model_dir(gen, model_default)
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", metavar="TEXT", help="the text to continue; - reads it from stdin (this or --prompt-file is required)")
    source.add_argument("--prompt-file", metavar="PATH", type=Path, help="read the prompt from this UTF-8 file")
    gen.add_argument("--max-new-tokens", type=count, default=200, metavar="N", help="tokens to generate at most (default: %(default)s)")
    gen.add_argument("--temperature", type=finite_float, default=DEFAULTS.temperature, metavar="T",
                     help="divide the logits by T; 0 picks the most likely token (greedy) (default: %(default)s)")
    gen.add_argument("--top-k", type=count, default=DEFAULTS.top_k, metavar="K",
                     help="sample among the K most likely tokens only; 0 for no limit (default: %(default)s)")
    gen.add_argument("--top-p", type=finite_float, default=DEFAULTS.top_p, metavar="P",
                     help="sample among the most likely tokens whose probability adds up to P, in (0, 1] (default: %(default)s)")
    gen.add_argument("--repetition-penalty", type=finite_float, default=DEFAULTS.repetition_penalty,
                     metavar="R", help="make tokens already in the text less likely; 1 for none (default: %(default)s)")
    gen.add_argument("--seed", type=count, default=DEFAULTS.seed, metavar="S",
                     help="the same seed gives the same text (default: a fresh random seed each run)")
    gen.add_argument("--echo", action=argparse.BooleanOptionalAction, default=True,
                     help="print the prompt before its continuation (default: --echo)")
    gen.add_argument("--stats", action="store_true", help="print token counts and speed to stderr (default: off)")
    score_parser = add_score_parser(commands, model_default)
    args = parser.parse_args(argv)
    if args.command == "score":
        if args.model_dir is None:
            score_parser.error("no MODEL_DIR given, and no default model beside the package (models/index.json)")
        return args
    if args.model_dir is None:
        gen.error("no MODEL_DIR given, and no default model beside the package (models/index.json)")
    ranges = (("--max-new-tokens", args.max_new_tokens >= 1, "a whole number >= 1", args.max_new_tokens),
              ("--temperature", args.temperature >= 0, "a number >= 0", args.temperature),
              ("--top-p", 0 < args.top_p <= 1, "a number in (0, 1]", args.top_p),
              ("--repetition-penalty", args.repetition_penalty > 0, "a number > 0", args.repetition_penalty))
    for option, ok, expected, value in ranges:
        if not ok:
            gen.error(f"argument {option}: expected {expected}, got {value}")
    return args


SCORE_EXAMPLE = 'mamba-wasm score models/shakespeare --text "To be, or not to be, that is the question."'


def add_score_parser(commands, model_default):
    sc = commands.add_parser(
        "score", help="the negative log-likelihood of each token of a text",
        description="Print each token of the text with its negative log-likelihood in nats under the "
                    "model (no sampling filters), then nats/token, nats/char and perplexity. The text "
                    "is scored as a document after the end-of-text token when the tokenizer has one.",
        epilog=f"example: {SCORE_EXAMPLE}")
    add_model_dir(sc, model_default)
    source = sc.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", metavar="TEXT", help="the text to score; - reads it from stdin (this or --file is required)")
    source.add_argument("--file", metavar="PATH", type=Path, help="read the text from this UTF-8 file")
    sc.add_argument("--json", action="store_true",
                    help="print one JSON object (ids, nll per token after the first, totals) instead of a table (default: off)")
    return sc


def read_text(path, option):
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read the {option} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"the {option} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def score_command(args):
    text = read_text(args.file, "file") if args.file is not None else (sys.stdin.read() if args.text == "-" else args.text)
    if not text:
        raise CommandError("the text is empty: give some with --text TEXT, --text - (stdin) or --file PATH")
    model, tokenizer = from_pretrained(args.model_dir)
    result = score(model, tokenizer, text)
    if args.json:
        print(json.dumps({"ids": result.ids, "nll": result.nll.tolist(), **result.totals()}))
        return
    print("token\tnats\ttext")
    for token, nats in zip(result.ids[1:], result.nll):
        print(f"{token}\t{nats:.4f}\t{json.dumps(tokenizer.decode([token]), ensure_ascii=False)}")
    per_char = "n/a" if result.nats_per_char is None else f"{result.nats_per_char:.4f}"
    print(f"{len(result.nll)} tokens, {result.n_chars} chars: {result.nats_per_token:.4f} nats/token, "
          f"{per_char} nats/char, perplexity {result.perplexity:.2f}")


def read_prompt(args):
    if args.prompt_file is not None:
        return read_text(args.prompt_file, "prompt file")
    if args.prompt == "-":
        return sys.stdin.read()
    return args.prompt


def generate_command(args):
    prompt = read_prompt(args)
    if not prompt:
        raise CommandError("the prompt is empty: give some text with --prompt TEXT, --prompt - (stdin) "
                           "or --prompt-file PATH")
    model, tokenizer = from_pretrained(args.model_dir)
    session = Session(model, tokenizer)
    began = time.perf_counter()
    session.start(prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed)
    prefilled = time.perf_counter()
    if args.echo:
        sys.stdout.write(prompt)
    while not session.done:
        sys.stdout.write(session.advance(1))
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.stats:
        decode = time.perf_counter() - prefilled
        print(f"prompt {session.n_prompt} tokens in {prefilled - began:.2f} s; generated {session.n_generated} "
              f"tokens at {session.n_generated / max(decode, 1e-9):.1f} tok/s", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    try:
        (score_command if args.command == "score" else generate_command)(args)
    except (MambaWasmError, CommandError) as exc:
        print(f"mamba-wasm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
