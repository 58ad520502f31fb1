# Runs inside Pyodide (bench/run_in_pyodide.mjs, started by bench/gguf.py, which writes PLAN): each
# file it lists (a checkpoint folder or a .gguf file, relative to the repository, mounted at /repo)
# is read into memory, loaded as the worker does (load_model_from_files) and decoded greedily.
import json
import os
import time

import numpy as np

import mamba_wasm

PLAN = json.load(open("/repo/.cache/bench/gguf_plan.json"))  # Pyodide does not see the host's environment
TOKENS = PLAN["tokens"]


def read_files(path):
    """{file name: bytes} as the worker hands them over."""
    if path.endswith(".gguf"):
        with open(path, "rb") as file:
            return {os.path.basename(path): file.read()}
    files = {}
    for name in ("config.json", "model.safetensors"):
        with open(os.path.join(path, name), "rb") as file:
            files[name] = file.read()
    return files


def run(path):
    began = time.perf_counter()
    files = read_files(path)
    size = sum(len(data) for data in files.values())
    read = time.perf_counter()
    model = mamba_wasm.load_model_from_files(files, os.path.basename(path))
    del files
    loaded = time.perf_counter()
    state, token = model.new_state(), 0
    model.step(token, state)  # warm up
    started = time.perf_counter()
    for _ in range(TOKENS):
        token = int(np.argmax(model.step(token, state)))
    decode = time.perf_counter() - started
    return size, read - began, loaded - read, TOKENS / decode


print(f"{'file':34} {'size MB':>8} {'read s':>7} {'load s':>7} {'decode tok/s':>13}")
for path in PLAN["files"]:
    size, read, load, speed = run("/repo/" + path)
    print(f"{os.path.basename(path):34} {size / 1e6:8.1f} {read:7.2f} {load:7.2f} {speed:13.1f}")
