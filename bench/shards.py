"""The cost of sharding in one process: the explicit reductions of mamba_wasm/sharded.py against the
plain step, and the bytes each shard materialises against the whole model. Prints a table.

    OPENBLAS_NUM_THREADS=1 python -m bench.shards [MODEL_DIR] [--tokens N] [--rounds R]
    node bench/run_in_pyodide.mjs bench/shards.py          (the same in Pyodide, with the defaults)

MODEL_DIR defaults to the mamba-130m-shaped checkpoint (bench/models.py writes it). Times are
this process's CPU time (natively time.process_time: run it with one BLAS thread; in Pyodide under
Node, process.cpuUsage(), as Pyodide's own clocks give wall time), which a busy machine disturbs far
less than the wall clock; per round the median over its tokens, over interleaved rounds (plain, K=1, K=2, plain, ...): the table
gives the best round (other jobs only ever add time) and the median round; K shards in one process do the same multiply-adds as the plain step, so the
difference is what the reductions cost: the generators, the sums, and smaller products.
"""

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path("/repo") if sys.platform == "emscripten" else Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mamba_wasm  # noqa: E402
from mamba_wasm.checkpoint import read_folder  # noqa: E402
from mamba_wasm.shard_loader import load_shard_from_files  # noqa: E402
from mamba_wasm.sharded import ShardedMamba  # noqa: E402

DEFAULT_MODEL = ROOT / ".cache" / "bench" / "mamba-130m-shaped"
PREFILL_LENGTH = 256  # generation.PREFILL_BLOCK
MB = 1e6


def node_cpu_seconds():
    """User + system CPU seconds of the Node process Pyodide runs in (its one thread does the work)."""
    import js

    usage = js.process.cpuUsage()
    return (usage.user + usage.system) / 1e6


clock = node_cpu_seconds if sys.platform == "emscripten" else time.process_time  # see the docstring


def memory_table(files, source, whole, counts):
    file_bytes = sum(len(data) for name, data in files.items() if name.endswith(".safetensors"))
    print(f"\nweights held ({source}): file {file_bytes / MB:.1f} MB, whole model float32 {4 * whole.n_params / MB:.1f} MB")
    print("| K | largest shard MB | shard / whole | all K shards MB | peak while loading one shard (beyond the file) MB |")
    print("|---:|---:|---:|---:|---:|")
    for k in counts:
        sizes, peak = [], 0
        for index in range(k):
            tracemalloc.start()
            shard = load_shard_from_files(files, source, index, k)
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            sizes.append(shard.nbytes)
            del shard
        print(f"| {k} | {max(sizes) / MB:.1f} | {max(sizes) / (4 * whole.n_params):.3f} | {sum(sizes) / MB:.1f} | {peak / MB:.1f} |")


def decode_ms(model, state, token, n_tokens):
    """Median CPU ms per greedy token over n_tokens steps."""
    times = []
    logits = model.step(token, state)
    for _ in range(n_tokens):
        began = clock()
        logits = model.step(int(np.argmax(logits)), state)
        times.append(clock() - began)
    return 1000 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", nargs="?", default=str(DEFAULT_MODEL))
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 3, 4])
    args = parser.parse_args(argv)
    files = read_folder(args.model_dir)
    whole = mamba_wasm.load_model_from_files(files, args.model_dir)
    c = whole.config
    print(f"{Path(args.model_dir).name}: d {c.d_model}, d_in {c.d_inner}, {c.n_layer} layers, v {c.vocab_size}; "
          f"{sys.platform}, NumPy {np.__version__}")
    memory_table(files, args.model_dir, whole, args.shards)

    variants = {"plain Mamba.step": whole}
    for k in (1, 2):
        variants[f"K={k} in one process"] = ShardedMamba(load_shard_from_files(files, args.model_dir, i, k) for i in range(k))
    states = {name: model.new_state() for name, model in variants.items()}
    prompt = [int(t) for t in np.random.default_rng(0).integers(0, c.vocab_size, PREFILL_LENGTH)]
    decode = {name: [] for name in variants}
    prefill = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, model in variants.items():
            began = clock()
            model.prefill(prompt, model.new_state())
            prefill[name].append(clock() - began)
            decode[name].append(decode_ms(model, states[name], prompt[0], args.tokens))
    exchanges = 1 + 2 * c.n_layer
    print(f"\nCPU time ({clock.__name__}); decode: {args.rounds} interleaved rounds x {args.tokens} tokens, "
          f"{exchanges} sums per token; prefill: {PREFILL_LENGTH} tokens, {exchanges} sums")
    print("| variant | decode ms/token, best round | median round | decode tok/s (best) | vs plain (best) | "
          "extra us per sum (best) | prefill tok/s (best) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    plain = min(decode["plain Mamba.step"])
    for name in variants:
        ms = min(decode[name])
        per_sum = "" if name.startswith("plain") else f"{1000 * (ms - plain) / exchanges:.0f}"
        print(f"| {name} | {ms:.2f} | {statistics.median(decode[name]):.2f} | {1000 / ms:.1f} | {plain / ms:.3f}x | "
              f"{per_sum} | {PREFILL_LENGTH / min(prefill[name]):.0f} |")


if __name__ == "__main__":
    main([] if sys.platform == "emscripten" else None)
