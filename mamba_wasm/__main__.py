"""Command line: `python -m mamba_wasm generate [MODEL_DIR] --prompt "..."` streams text to stdout."""

import argparse
import json
import sys
import time
from pathlib import Path

from .checkpoint import load_model
from .errors import MambaWasmError
from .generation import Session
from .gguf_checkpoint import is_gguf
from .tokenizer import Tokenizer

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def default_model_dir():
    """The model the page loads by default: models/index.json's "default", beside the package."""
    try:
        index = json.loads((MODELS_DIR / "index.json").read_text())
        entry = next(m for m in index["models"] if m["name"] == index["default"])
        return str(MODELS_DIR / entry.get("path", entry["name"]))
    except (OSError, ValueError, KeyError, StopIteration):
        return None


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m mamba_wasm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="stream a continuation of a prompt")
    gen.add_argument("model_dir", nargs="?", default=default_model_dir(),
                     help="folder with config.json, *.safetensors, tokenizer.json, or one llama.cpp .gguf file "
                     "(default: the site's default model)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=200)
    gen.add_argument("--temperature", type=float, default=0.8, help="0 for greedy")
    gen.add_argument("--top-k", type=int, default=0, help="0 for no limit")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--repetition-penalty", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stats", action="store_true", help="print token counts and speed to stderr")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        parser.error("no MODEL_DIR given and no default model found in models/index.json")
    return args


def generate_command(args):
    model = load_model(args.model_dir)
    if is_gguf(args.model_dir):
        tokenizer = Tokenizer.from_gguf(Path(args.model_dir).read_bytes(), args.model_dir)
    else:
        tokenizer = Tokenizer.from_file(Path(args.model_dir) / "tokenizer.json")
    session = Session(model, tokenizer)
    began = time.perf_counter()
    session.start(
        args.prompt,
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )
    prefilled = time.perf_counter()
    while not session.done:
        sys.stdout.write(session.advance(1))
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.stats:
        decode = time.perf_counter() - prefilled
        print(
            f"prompt {session.n_prompt} tokens in {prefilled - began:.2f} s; "
            f"generated {session.n_generated} tokens at {session.n_generated / max(decode, 1e-9):.1f} tok/s",
            file=sys.stderr,
        )


def main(argv=None):
    args = parse_args(argv)
    try:
        generate_command(args)
    except MambaWasmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
