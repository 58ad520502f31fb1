"""The model split across K shards (mamba_wasm/sharded.py, sharded2.py, shard_loader.py) against
the whole model.

On every parity fixture, Mamba-1 and Mamba-2, and K = 1..4 (d_in, the heads and the vocabulary not
multiples of K included; Mamba-2 groups whole on a shard and cut across shards): logits within
float32 reduction-order tolerance of the single model's, the same 32 greedy ids as HF's, and the
shards' states together equal to the single model's state. Then: each shard holds only its slice,
and misuse gets a clear error.
"""

import os

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

import mamba_wasm
from mamba_wasm import CheckpointError, ConfigError, InputError
from mamba_wasm.checkpoint import read_folder
from mamba_wasm.shard_loader import load_shard_from_files, load_sharded_model
from mamba_wasm.sharded import ShardedMamba, ShardedState, plan_shards, sum_partials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "models")
NAMES = sorted(name for name in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, name)))
TOLERANCE = 1e-5  # max|diff| / max(1, max|logits|): only the order of float32 sums differs
SHARD_COUNTS = (1, 2, 3, 4)


def rel_err(a, b):
    return np.abs(a - b).max() / max(1.0, np.abs(b).max())


@pytest.fixture(scope="module", params=NAMES)
def fixture(request):
    folder = os.path.join(FIXTURES, request.param)
    return folder, mamba_wasm.load_model(folder), np.load(os.path.join(folder, "expected.npz"))


def test_fixtures_cover_uneven_shards_and_cut_and_whole_groups():
    configs = [mamba_wasm.load_model(os.path.join(FIXTURES, name)).config for name in NAMES]
    assert {"Mamba-1", "Mamba-2"} == {c.architecture for c in configs}
    assert any(c.d_inner % k for c in configs for k in SHARD_COUNTS if c.architecture == "Mamba-1")
    assert any(c.n_heads % k for c in configs for k in SHARD_COUNTS if c.architecture == "Mamba-2")
    assert any(c.vocab_size % k for c in configs for k in SHARD_COUNTS)
    cut = [plan_shards(c, k)[0].cut_groups for c in configs for k in (2, 3)
           if c.architecture == "Mamba-2" and k <= c.n_heads]
    assert True in cut and False in cut


@pytest.mark.parametrize("k", SHARD_COUNTS)
def test_sharded_logits_ids_and_state_equal_the_whole_model(fixture, k):
    folder, whole, expected = fixture
    if whole.config.architecture == "Mamba-2" and k > whole.config.n_heads:
        with pytest.raises(InputError, match=f"{k} shards is more than this model has heads"):
            load_sharded_model(folder, k)
        return
    sharded = load_sharded_model(folder, k)
    ids = expected["prompt_ids"].tolist()

    reference = whole.forward(ids)
    assert rel_err(sharded.forward(ids), reference) <= TOLERANCE

    state, whole_state = sharded.new_state(), whole.new_state()
    stepped = np.stack([sharded.step(token, state) for token in ids])
    for token in ids:
        whole.step(token, whole_state)
    assert stepped.dtype == np.float32 and stepped.shape == reference.shape
    assert rel_err(stepped, reference) <= TOLERANCE
    joined = sharded.join_state(state)
    assert joined.conv.shape == whole_state.conv.shape and joined.ssm.shape == whole_state.ssm.shape
    assert rel_err(joined.conv, whole_state.conv) <= TOLERANCE
    assert rel_err(joined.ssm, whole_state.ssm) <= TOLERANCE

    prefilled = sharded.new_state()
    assert rel_err(sharded.prefill(ids, prefilled), reference[-1]) <= TOLERANCE
    assert rel_err(sharded.join_state(prefilled).ssm, whole_state.ssm) <= TOLERANCE

    token, greedy = ids[-1], []
    state = sharded.split_state(whole.new_state())
    sharded.prefill(ids[:-1], state)
    for _ in range(len(expected["greedy_ids"])):
        token = int(np.argmax(sharded.step(token, state)))
        greedy.append(token)
    assert greedy == expected["greedy_ids"].tolist()


@pytest.mark.parametrize("k", (2, 3))
def test_a_whole_state_split_into_shards_continues_the_same(fixture, k):
    folder, whole, expected = fixture
    if whole.config.architecture == "Mamba-2" and k > whole.config.n_heads:
        return  # refused: the test above
    ids = expected["prompt_ids"].tolist()
    sharded = load_sharded_model(folder, k)
    whole_state = whole.new_state()
    whole.prefill(ids[:-1], whole_state)
    state = sharded.split_state(whole_state)
    np.testing.assert_array_equal(sharded.join_state(state).ssm, whole_state.ssm)
    np.testing.assert_array_equal(sharded.join_state(state).conv, whole_state.conv)
    assert rel_err(sharded.step(ids[-1], state), whole.step(ids[-1], whole_state)) <= TOLERANCE


@pytest.mark.parametrize("total,k", [(40, 3), (24, 4), (7, 7), (150, 4), (50280, 3)])
def test_plan_is_balanced_contiguous_and_complete(total, k):
    config = mamba_wasm.load_model(os.path.join(FIXTURES, "hf_untied_k3")).config
    config = type(config)(**{**config.to_dict(), "d_inner": total, "vocab_size": total + 1})
    shards = plan_shards(config, k)
    for axis, size in (("channels", total), ("vocab", total + 1)):
        parts = [getattr(s, axis) for s in shards]
        assert parts[0].start == 0 and parts[-1].stop == size
        assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert [s.index for s in shards] == list(range(k)) and all(s.count == k for s in shards)


@pytest.mark.parametrize("name", ["f16_sharded", "hf_untied_k3", "original_layout", "bf16", "mamba2_hf_groups_bias",
                                  "mamba2_f16_sharded", "mamba2_bf16"])
def test_each_shard_holds_its_slice_only_and_none_of_the_file(name):
    folder = os.path.join(FIXTURES, name)
    files = read_folder(folder)
    whole = mamba_wasm.load_model_from_files(files, folder)
    c = whole.config
    k = min(3, c.n_heads) if c.architecture == "Mamba-2" else 3
    shards = [load_shard_from_files(files, folder, i, k) for i in range(k)]
    on_every_shard = 4 * (c.n_layer * c.d_model * (1 + c.proj_bias) + c.d_model)  # norms, out_proj.bias
    # Mamba-2: a group's B and C (in_proj rows and bias, conv weights and bias) are on each shard it touches
    per_group = c.n_layer * 2 * c.d_state * (c.d_model + c.proj_bias + c.d_conv + c.conv_bias) * 4 if c.architecture == "Mamba-2" else 0
    extra_groups = sum(len(s.shard.groups) for s in shards) - (c.n_groups if c.architecture == "Mamba-2" else 0)
    assert sum(s.nbytes for s in shards) == 4 * whole.n_params + (k - 1) * on_every_shard + extra_groups * per_group
    for shard in shards:
        d_s, v_s = len(shard.shard.channels), len(shard.shard.vocab)
        assert shard.nbytes < 4 * whole.n_params * (max(d_s / c.d_inner, v_s / c.vocab_size) + 0.1) + on_every_shard \
            + len(shard.shard.groups) * per_group
        for layer in shard.weights.layers:
            assert layer.out_proj.shape == (c.d_model, d_s)
        assert shard.weights.lm_head.shape == (v_s, c.d_model)
        for array in _arrays(shard.weights):
            assert array.flags.c_contiguous and array.dtype == np.float32
            for data in files.values():
                assert not np.may_share_memory(array, np.frombuffer(data, np.uint8))  # the file can be freed


def _arrays(weights):
    yield from (weights.embedding, weights.norm_f, weights.lm_head)
    for layer in weights.layers:
        yield from (value for value in vars(layer).values() if value is not None)


def test_generation_runs_on_shards_and_gives_the_same_text():
    folder = os.path.join(ROOT, "models", "shakespeare")
    tokenizer = mamba_wasm.Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    whole = "".join(mamba_wasm.generate(mamba_wasm.load_model(folder), tokenizer, "ROMEO.", 40, temperature=0))
    sharded = load_sharded_model(folder, 2)
    assert "".join(mamba_wasm.generate(sharded, tokenizer, "ROMEO.", 40, temperature=0)) == whole
    session = mamba_wasm.Session(sharded, tokenizer)
    session.start("ROMEO.", 5, temperature=0)
    assert session.state_nbytes == mamba_wasm.load_model(folder).state_nbytes


@pytest.fixture(scope="module")
def pair():
    folder = os.path.join(FIXTURES, "hf_untied_k3")
    return folder, load_sharded_model(folder, 2)


def test_bad_shard_counts_are_refused(pair):
    folder, sharded = pair
    for count in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="positive integer"):
            plan_shards(sharded.config, count)
    with pytest.raises(InputError, match="more than this model has channels"):
        plan_shards(sharded.config, sharded.config.d_inner + 1)
    files = read_folder(folder)
    for index in (2, -1, None):
        with pytest.raises(ConfigError, match=r"shard index must be an integer in 0\.\.1"):
            load_shard_from_files(files, folder, index, 2)


def test_wrong_states_and_tokens_are_refused_and_change_nothing(pair):
    folder, sharded = pair
    whole = mamba_wasm.load_model(folder)
    with pytest.raises(InputError, match="ShardedState of 2"):
        sharded.step(1, whole.new_state())
    with pytest.raises(InputError, match="ShardedState of 2"):
        sharded.step(1, load_sharded_model(folder, 3).new_state())
    state = sharded.new_state()
    swapped = ShardedState((state.shards[0], whole.new_state()))
    with pytest.raises(InputError, match=r"shard 2 of 2 needs its own state: the state does not fit this model: "
                                         r"conv is float32 \(2, 40, 3\), expected float32 \(2, 20, 3\)"):
        sharded.step(1, swapped)
    for bad in ([sharded.config.vocab_size], [1, -1]):
        with pytest.raises(InputError, match="out of range"):
            sharded.forward(bad, state)
    with pytest.raises(InputError, match="empty"):
        sharded.prefill([], state)
    assert all(not s.ssm.any() and not s.conv.any() for s in state.shards)  # refused calls changed nothing


def test_incomplete_or_mixed_shard_sets_are_refused(pair):
    folder, sharded = pair
    files = read_folder(folder)
    with pytest.raises(InputError, match="every shard of one plan"):
        ShardedMamba([sharded.shards[0]])
    with pytest.raises(InputError, match="every shard of one plan"):
        ShardedMamba(reversed(sharded.shards))
    with pytest.raises(InputError, match="every shard of one plan"):
        ShardedMamba([sharded.shards[0], load_shard_from_files(files, folder, 1, 3)])
    other = os.path.join(FIXTURES, "hf_untied_nobias")
    with pytest.raises(InputError, match="configs differ"):
        ShardedMamba([sharded.shards[0], load_shard_from_files(read_folder(other), other, 1, 2)])
    with pytest.raises(InputError, match="out of step"):
        sum_partials([np.zeros(3, np.float32), np.zeros(4, np.float32)])


def test_a_transport_that_sends_a_wrong_sum_is_caught(pair):
    _, sharded = pair
    shard = sharded.shards[0]
    step = shard.step(1, shard.new_state())
    row = next(step)
    assert row.shape == (sharded.config.d_model,)
    partial = step.send(row)
    assert partial.shape == (sharded.config.dt_rank + 2 * sharded.config.d_state,)
    with pytest.raises(InputError, match=r"sum sent back to a shard is of shape \(1,\), but its partial sum has shape \(19,\)"):
        step.send(np.zeros(1, np.float32))
    step = shard.step(1, shard.new_state())
    next(step)
    with pytest.raises(InputError, match="sum sent back to a shard is a list"):
        step.send([0.0] * sharded.config.d_model)


def _rewrite(folder, change):
    files = read_folder(folder)
    tensors = dict(load_safetensors(files["model.safetensors"]))
    change(tensors)
    files["model.safetensors"] = save_safetensors(tensors)
    return files


def test_bad_tensors_are_refused_by_every_shard_that_reads_them():
    folder = os.path.join(FIXTURES, "hf_untied_k3")
    key = "backbone.layers.1.mixer.out_proj.weight"
    files = _rewrite(folder, lambda t: t.pop(key))
    with pytest.raises(CheckpointError, match=f"model.safetensors: missing tensor '{key}'"):
        load_shard_from_files(files, folder, 0, 2)
    files = _rewrite(folder, lambda t: t.update(extra=np.zeros(2, np.float32)))
    with pytest.raises(CheckpointError, match="unexpected tensors 'extra'"):
        load_shard_from_files(files, folder, 1, 2)
    files = _rewrite(folder, lambda t: t.update({key: t[key][:, :-1].copy()}))
    with pytest.raises(CheckpointError, match=r"has shape \(20, 39\), expected \(20, 40\)"):
        load_shard_from_files(files, folder, 1, 2)

    def poison_last_channel(tensors):
        tensors[key] = tensors[key].copy()
        tensors[key][0, -1] = np.nan

    files = _rewrite(folder, poison_last_channel)
    load_shard_from_files(files, folder, 0, 2)  # shard 0's columns are finite
    with pytest.raises(CheckpointError, match="non-finite"):
        load_shard_from_files(files, folder, 1, 2)
