"""Checkpoint files the e2e tests serve, made from a committed model (the shared safetensors writer)."""

import json

import numpy as np

from mamba_wasm.safetensors import read_safetensors, safetensors_bytes


def f16_two_shards(model_bytes):
    """{file name: bytes}: the weights of a model.safetensors as float16 in two shard files plus
    model.safetensors.index.json, as a Hub repository has them."""
    tensors = {k: np.array(v) for k, v in read_safetensors(model_bytes).items()}
    names = sorted(tensors)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    shards = {f"model-0000{i + 1}-of-00002.safetensors": safetensors_bytes(
        {k: tensors[k].astype(np.float16) for k in half}) for i, half in enumerate(halves)}
    index = {"metadata": {"total_size": sum(len(b) for b in shards.values())},
             "weight_map": {k: shard for shard, half in zip(shards, halves) for k in half}}
    return {"model.safetensors.index.json": json.dumps(index).encode(), **shards}
