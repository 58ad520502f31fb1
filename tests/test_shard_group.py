"""A model run by K workers (mamba_wasm/shard_group.py) from cut files (shard_bytes.py), natively:
K threads stand in for the page's K workers, with a link of queues and barriers in place of the
SharedArrayBuffer. Each worker gets only its shard's bytes; the leader's Session gives the same
text as the whole model's, greedy and sampled, through Regenerate (a copied state) and Continue.
"""

import json
import os
import queue
import threading

import numpy as np
import pytest

import mamba_wasm
from mamba_wasm import InputError, page_views
from mamba_wasm.checkpoint import read_folder
from mamba_wasm.shard_bytes import cut_bytes, cut_layout, header_length
from mamba_wasm.shard_group import ShardFollower, ShardGroup
from mamba_wasm.shard_loader import load_shard_from_files
from mamba_wasm.sharded import sum_partials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "models")
NAMES = sorted(name for name in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, name)))


def weight_file(name):
    return name.endswith(".safetensors")


def cut_files(files, source, n_shards):
    """Each shard's files as the browser's leader makes them: the layout from the headers alone."""
    heads = {name: data[: header_length(data, name)] if weight_file(name) else data for name, data in files.items()}
    sizes = {name: len(data) for name, data in files.items()}
    layout = cut_layout(heads, sizes, source, n_shards)
    return [{**{n: d for n, d in files.items() if not weight_file(n)},
             **{n: bytes(cut_bytes(files[n], cut)) for n, cut in shard.items()}} for shard in layout]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_shards", [1, 2, 3])
def test_cut_files_load_the_same_shard_and_hold_only_its_bytes(name, n_shards):
    folder = os.path.join(FIXTURES, name)
    files = read_folder(folder)
    config = mamba_wasm.load_model(folder).config
    if config.architecture == "Mamba-2" and n_shards > config.n_heads:
        with pytest.raises(InputError, match="heads"):
            cut_files(files, name, n_shards)
        return
    weights = sum(len(d) for n, d in files.items() if weight_file(n))
    for index, cut in enumerate(cut_files(files, name, n_shards)):
        whole = load_shard_from_files(files, name, index, n_shards)
        part = load_shard_from_files(cut, name, index, n_shards, precut=True)
        for a, b in zip(arrays(whole.weights), arrays(part.weights)):
            assert np.array_equal(a, b)
        cut_bytes_total = sum(len(d) for n, d in cut.items() if weight_file(n))
        assert cut_bytes_total <= weights // n_shards + weights // 4  # about 1/K, plus replicated norms
        assert cut_bytes_total < weights or n_shards == 1


def arrays(weights):
    out = [weights.embedding, weights.norm_f, weights.lm_head]
    for layer in weights.layers:
        out += [value for value in vars(layer).values() if value is not None]
    return out


def test_a_shape_lie_in_a_cut_file_is_named():
    files = read_folder(os.path.join(FIXTURES, "hf_untied_k3"))
    cut = cut_files(files, "m", 3)[2]
    with pytest.raises(mamba_wasm.CheckpointError, match="expected"):
        load_shard_from_files(cut, "m", 0, 3, precut=True)  # shard 3's files are not shard 1's


class ThreadLink:
    """K threads' transport: commands through queues, sums and gathers through a barrier."""

    def __init__(self, n_shards):
        self.n = n_shards
        self.commands = [queue.Queue() for _ in range(n_shards)]
        self.barrier = threading.Barrier(n_shards)
        self.slots = [None] * n_shards

    def for_worker(self, index):
        return WorkerLink(self, index)


class WorkerLink:
    def __init__(self, shared, index):
        self.shared, self.index = shared, index

    def command(self, op, args):
        for q in self.shared.commands[1:]:
            q.put((op, list(args)))

    def _exchange(self, array):
        shared = self.shared
        shared.barrier.wait()
        shared.slots[self.index] = array.copy()
        shared.barrier.wait()
        parts = list(shared.slots)
        shared.barrier.wait()
        return parts

    def all_sum(self, partial):
        return sum_partials(self._exchange(partial))

    def gather(self, part):
        parts = self._exchange(part)
        return parts if self.index == 0 else None


def run_group(folder, n_shards, body):
    """Start n_shards - 1 follower threads on cut files; body(model, tokenizer) on the leader."""
    files = read_folder(folder)
    cuts = cut_files(files, folder, n_shards)
    shared = ThreadLink(n_shards)
    errors = []

    def follow(index):
        try:
            follower = ShardFollower(load_shard_from_files(cuts[index], folder, index, n_shards, precut=True),
                                     shared.for_worker(index), {})
            while follower.execute(*shared.commands[index].get()):
                pass
        except Exception as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(1, n_shards)]
    for thread in threads:
        thread.start()
    group = ShardGroup(load_shard_from_files(cuts[0], folder, 0, n_shards, precut=True), shared.for_worker(0))
    try:
        return body(group, mamba_wasm.Tokenizer.from_file(os.path.join(folder, "tokenizer.json")))
    finally:
        group.release()
        for thread in threads:
            thread.join(10)
        assert not errors, errors


@pytest.mark.parametrize("folder", [os.path.join(ROOT, "models", "shakespeare"),
                                    os.path.join(ROOT, "models", "shakespeare-mamba2")])
@pytest.mark.parametrize("n_shards", [2, 3])
def test_k_workers_write_the_whole_models_text(folder, n_shards):
    model = mamba_wasm.load_model(folder)
    tokenizer = mamba_wasm.Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))

    def texts(m, t):
        session = mamba_wasm.Session(m, t)
        out = []
        for params in ({"temperature": 0}, {"temperature": 0.9, "top_k": 20, "seed": 5}):
            session.start("ROMEO:\n", 24, **params)
            first = session.advance(12)
            session.start("ROMEO:\n", 24, **params)  # Regenerate: the prompt's state copied
            again = session.advance(12)
            session.extend(8)  # Continue
            out.append((first, again, again + session.advance(30), session.state_nbytes))
        return out

    assert run_group(folder, n_shards, texts) == texts(model, tokenizer)


def test_a_block_longer_than_a_prefill_block_is_refused():
    folder = os.path.join(ROOT, "models", "shakespeare")

    def body(group, tokenizer):
        with pytest.raises(InputError, match="prompt block"):
            group.prefill(np.zeros(1000, np.int64), group.new_state())
        return group.step(3, group.new_state()).shape

    assert run_group(folder, 2, body) == (mamba_wasm.load_model(folder).config.vocab_size,)


def test_the_token_view_and_branch_work_on_k_workers_and_score_says_it_needs_one():
    """An inspected generation on a split model records the whole model's probabilities and
    branches to its text; Score and the state view (sequence mode) name the Workers setting."""
    folder = os.path.join(ROOT, "models", "shakespeare")

    def inspected(m, t):
        session = mamba_wasm.Session(m, t, record_probabilities=True, snapshot_every=4)
        session.start("ROMEO:\n", 20, temperature=0.8, top_k=20, seed=3)
        text = session.advance(20)
        records = json.loads(page_views.token_records(session, 0))
        branched = session.branch(9, records[9]["alts"][1][0])
        return text, [r["id"] for r in records], [(r["p"], r["p_model"]) for r in records], branched

    def split(group, tokenizer):
        for view in (page_views.score_record, page_views.probe_record):
            with pytest.raises(InputError, match="Workers to 1"):
                view(group, tokenizer, "ROMEO:")
        return inspected(group, tokenizer)

    text, ids, probabilities, branched = inspected(mamba_wasm.load_model(folder),
                                                  mamba_wasm.Tokenizer.from_file(os.path.join(folder, "tokenizer.json")))
    split_text, split_ids, split_probabilities, split_branched = run_group(folder, 2, split)
    assert (split_text, split_ids, split_branched) == (text, ids, branched)
    np.testing.assert_allclose(split_probabilities, probabilities, rtol=1e-4)  # sums in another order
