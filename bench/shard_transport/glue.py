"""The Python side of one benchmark worker (bench/shard_transport.py): the whole model, or one shard
whose step JavaScript drives one partial sum at a time (mamba_wasm/sharded.py's protocol).

Partial sums cross to JavaScript as to_js(memoryview) (a Float32Array copy) and come back through
JsProxy.to_bytes(): in Node, with the machine busy, about 25 and 90 us, against 200-300 us for
returning the array and copying it out with PyProxy.getBuffer."""

import numpy as np
from pyodide.ffi import to_js

import mamba_wasm
from mamba_wasm.shard_loader import load_shard_from_files


class BenchWorker:
    def __init__(self, files, index, count, whole):
        if whole:
            self.model = mamba_wasm.load_model_from_files(files, "model")
            self.shard = None
        else:
            self.model = None
            self.shard = load_shard_from_files(files, "model", index, count)
        self.state = (self.model or self.shard).new_state()
        self.step = None  # the shard's step generator while a token is under way
        self.logits = None  # this shard's slice (v_s,) after the last step

    @property
    def weights_mb(self):
        return (4 * self.model.n_params if self.model else self.shard.nbytes) / 1e6

    def whole_step(self, token):
        """The plain model: the greedy next token."""
        return int(np.argmax(self.model.step(token, self.state)))

    def start(self, token):
        """Begin a shard's step; the first partial sum (the embedding row or zeros) as a Float32Array."""
        self.step = self.shard.step(token, self.state)
        return to_js(memoryview(self.step.send(None)))

    def advance(self, total):
        """Send the total (a JS Float32Array) back; the next partial sum (a Float32Array), or None once the step is done."""
        try:
            return to_js(memoryview(self.step.send(np.frombuffer(total.to_bytes(), np.float32))))
        except StopIteration as finished:
            self.logits, self.step = finished.value, None
            return None

    def best(self):
        """[largest logit, its token id] in this shard's vocabulary slice: a distributed greedy argmax."""
        i = int(np.argmax(self.logits))
        return [float(self.logits[i]), i + self.shard.shard.vocab.start]
