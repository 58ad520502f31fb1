"""Native measurements of one engine on one checkpoint, printed as JSON (one process per run,
so each peak RSS belongs to one engine alone: VmHWM, the high-water mark of this process's own
address space, not ru_maxrss, which on Linux a child inherits from its parent across fork and exec).

    python -m bench.native mamba_wasm|transformers MODEL_DIR [--tokens N]
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np

PROMPT_LENGTHS = (16, 128, 512)
PROBE_TOKENS = (10, 1000, 4000)  # time per token is reported around these positions
WARMUP = 5


def random_ids(vocab, length, seed=0):
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, length)]


def summarize(step_seconds, prefill_seconds):
    """Decode tok/s is the median over steady-state tokens (after WARMUP)."""
    steady = step_seconds[WARMUP:]
    around = {}
    for probe in PROBE_TOKENS:
        window = step_seconds[max(0, probe - 5) : probe + 5]
        if len(step_seconds) >= probe:
            around[str(probe)] = 1000 * statistics.median(window)
    return {
        "decode_tok_s": 1 / statistics.median(steady),
        "ms_per_token_at": around,
        "prefill_tok_s": {str(l): l / s for l, s in prefill_seconds.items()},
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb():
    """VmHWM from /proc/self/status in MiB (Linux); None where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_mamba_wasm(model_dir, n_tokens):
    import mamba_wasm

    model = mamba_wasm.load_model(model_dir)
    vocab = model.config.vocab_size
    prefill = {}
    for length in PROMPT_LENGTHS:
        ids = random_ids(vocab, length)
        began = time.perf_counter()
        model.prefill(ids, model.new_state())
        prefill[length] = time.perf_counter() - began
    state = model.new_state()
    logits = model.prefill(random_ids(vocab, 16), state)
    steps = []
    for _ in range(n_tokens):
        began = time.perf_counter()
        logits = model.step(int(np.argmax(logits)), state)
        steps.append(time.perf_counter() - began)
    return summarize(steps, prefill)


def run_transformers(model_dir, n_tokens):
    import torch
    from transformers import AutoModelForCausalLM  # MambaForCausalLM or Mamba2ForCausalLM, by config.json

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    prefill = {}
    with torch.inference_mode():
        for length in PROMPT_LENGTHS:
            ids = torch.tensor([random_ids(vocab, length)])
            began = time.perf_counter()
            model(ids, logits_to_keep=1)
            prefill[length] = time.perf_counter() - began

    class Clock:  # a generate() streamer: put() is called once per new token
        def __init__(self):
            self.stamps = []

        def put(self, value):
            self.stamps.append(time.perf_counter())

        def end(self):
            pass

    clock = Clock()
    with torch.inference_mode():
        model.generate(torch.tensor([random_ids(vocab, 16)]), max_new_tokens=n_tokens, min_new_tokens=n_tokens,
                       do_sample=False, streamer=clock)
    # stamps[0] marks the prompt; each later gap is one decode step
    return summarize(list(np.diff(clock.stamps[1:])), prefill)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["mamba_wasm", "transformers"])
    parser.add_argument("model_dir")
    parser.add_argument("--tokens", type=int, default=4010)
    args = parser.parse_args(argv)
    run = run_mamba_wasm if args.engine == "mamba_wasm" else run_transformers
    json.dump(run(args.model_dir, args.tokens), sys.stdout)


if __name__ == "__main__":
    main()
