"""Decode speed with the probe off and on, side by side: `python3 bench/probe.py [MODEL_DIR]`.

Natively, one step at a time from a fresh state; each row alternates off and on so a busy machine
slows both alike. Not part of `build.py bench` (its Pyodide rows are the page's business)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import mamba_wasm  # noqa: E402

STEPS = 300
ROUNDS = 3


def tokens_per_second(model, probe):
    state = model.new_state()
    began = time.perf_counter()
    for i in range(STEPS):
        model.step(i % model.config.vocab_size, state, probe=probe)
    return STEPS / (time.perf_counter() - began)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "models", "shakespeare")
    model = mamba_wasm.load_model(folder)
    print(f"{'round':>5} {'probe off tok/s':>16} {'probe on tok/s':>15} {'on / off':>9}")
    for round_ in range(1, ROUNDS + 1):
        off = tokens_per_second(model, None)
        on = tokens_per_second(model, mamba_wasm.Probe(model.config.n_layer))
        print(f"{round_:>5} {off:>16.0f} {on:>15.0f} {on / off:>9.2f}")


if __name__ == "__main__":
    main()
