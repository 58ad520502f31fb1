"""Make the placeholder model the page loads until a trained one exists: random weights, real layout.

    python3 scripts/make_random_model.py [--out models/tiny-random] [--seed 0]

Writes, in exactly the layout `MambaForCausalLM.save_pretrained` and a GPT-NeoX tokenizer use:
    config.json         HF transformers MambaConfig (hidden_size, num_hidden_layers, state_size, ...)
    model.safetensors   float32 tensors backbone.embeddings.weight, backbone.layers.N.mixer.*, ...
    tokenizer.json      byte-level BPE trained with HF `tokenizers` (NFC normalizer, ByteLevel
                        pre-tokenizer without prefix space, ByteLevel decoder, <|endoftext|> = 0)

The weights are random, so the text is gibberish; what matters is that every file is the real
thing, so the browser exercises the same loading and tokenizing code a trained checkpoint needs.
Needs torch, transformers and tokenizers (requirements-test.txt); the page needs none of them.
"""

import argparse
import inspect
import json
import pathlib

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import MambaConfig, MambaForCausalLM

SPECIAL_TOKENS = ["<|endoftext|>", "<|padding|>"]  # ids 0 and 1, as in GPT-NeoX's tokenizer
VOCAB_SIZE = 512
D_MODEL = 64
N_LAYER = 2
D_STATE = 16


def training_text():
    """Some English and a little non-ASCII text, from the standard library so nothing is fetched."""
    import argparse as a, collections, dataclasses, functools, json as j, pathlib as p, unittest

    docs = [inspect.getdoc(m) or "" for m in (a, collections, dataclasses, functools, j, p, unittest)]
    extra = "Café, naïve, façade. Grüße aus Köln. 東京 ☃ — “quotes” and emoji 🙂.\n"
    return docs + [extra] * 20


def train_tokenizer():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_text(), trainer=trainer)
    return tokenizer


def make_model(vocab_size, seed):
    torch.manual_seed(seed)
    config = MambaConfig(
        vocab_size=vocab_size,
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYER,
        state_size=D_STATE,
        expand=2,
        conv_kernel=4,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
        tie_word_embeddings=True,
    )
    return MambaForCausalLM(config).eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("models/tiny-random"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tokenizer = train_tokenizer()
    model = make_model(tokenizer.get_vocab_size(), args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    (args.out / "generation_config.json").unlink(missing_ok=True)  # the page does not read it
    tokenizer.save(str(args.out / "tokenizer.json"))

    n_params = sum(p.numel() for p in model.parameters())
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out}: {n_params:,} parameters, vocab {tokenizer.get_vocab_size()}, "
          f"{size / 1e6:.2f} MB on disk")
    print(json.dumps({"files": sorted(f.name for f in args.out.iterdir())}))


if __name__ == "__main__":
    main()
