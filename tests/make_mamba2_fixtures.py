"""Write the Mamba-2 golden fixtures: tiny random checkpoints and HF transformers' outputs.

    python3 tests/make_mamba2_fixtures.py     # needs torch, transformers 5.x, safetensors

The Mamba-2 twin of make_model_fixtures.py (same expected.npz, same seed search, same rounding
for F16/BF16), with transformers' Mamba2ForCausalLM as the reference. Each case writes
tests/fixtures/models/mamba2_<name>/: a checkpoint folder and expected.npz with
    prompt_ids  (20,)      int64    random token ids
    logits      (20, v)    float32  Mamba2ForCausalLM(prompt_ids).logits, no cache: the chunked
                                    SSD scan (mamba2_chunk_scan) with the config's chunk_size
    greedy_ids  (32,)      int64    model.generate(do_sample=False): HF's chunked prefill, then its
                                    one-token path (mamba2_selective_state_update)
The cases cover n_groups 1 and > 1 (one head per group included), head_dim 4 to 16, d_state 4 to
32, chunk sizes that divide the prompt length and that do not (and one longer than the prompt),
biases on and off, tied and untied heads, F16 sharded, BF16, and the state-spaces layout with a
padded vocabulary.
"""

import math
import os
import shutil

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import Mamba2Config, Mamba2ForCausalLM

from make_model_fixtures import FIXTURES, MIN_DISTINCT, MIN_MARGIN, reference, round_to, write_json

PROMPT_LEN = 20
ORIGINAL_VOCAB = 250  # before padding to a multiple of 16, as state-spaces/mamba2-* do

# name -> (transformers Mamba2Config arguments, how to save: "hf" | "original" | ("hf", dtype, max_shard_size))
CASES = {
    # one group, head_dim 8, d_state 16, chunk 4 divides 20, untied, no projection biases
    "mamba2_hf_untied": (
        dict(vocab_size=96, hidden_size=32, num_heads=8, head_dim=8, state_size=16, n_groups=1, chunk_size=4,
             conv_kernel=4, use_bias=False, use_conv_bias=True, tie_word_embeddings=False),
        "hf",
    ),
    # two groups of 6 heads, head_dim 4, d_state 8, chunk 7 does not divide 20, k 3, tied, all biases
    "mamba2_hf_groups_bias": (
        dict(vocab_size=128, hidden_size=24, num_heads=12, head_dim=4, state_size=8, n_groups=2, chunk_size=7,
             conv_kernel=3, use_bias=True, use_conv_bias=True, tie_word_embeddings=True),
        "hf",
    ),
    # a group per head (4 of them), head_dim 16, d_state 4, chunk 3, k 2, no biases at all, epsilon 1e-6
    "mamba2_hf_nobias": (
        dict(vocab_size=200, hidden_size=32, num_heads=4, head_dim=16, state_size=4, n_groups=4, chunk_size=3,
             conv_kernel=2, use_bias=False, use_conv_bias=False, layer_norm_epsilon=1e-6,
             tie_word_embeddings=False),
        "hf",
    ),
    # float16, sharded with model.safetensors.index.json, tied, two groups, the default chunk (256 > 20)
    "mamba2_f16_sharded": (
        dict(vocab_size=128, hidden_size=32, num_heads=8, head_dim=8, state_size=16, n_groups=2, chunk_size=256,
             conv_kernel=4, use_bias=True, tie_word_embeddings=True),
        ("hf", torch.float16, "20KB"),
    ),
    # bfloat16, one file, untied, head_dim 16, d_state 32, chunk 8
    "mamba2_bf16": (
        dict(vocab_size=64, hidden_size=16, num_heads=2, head_dim=16, state_size=32, n_groups=1, chunk_size=8,
             conv_kernel=4, tie_word_embeddings=False),
        ("hf", torch.bfloat16, None),
    ),
    # state-spaces layout: vocab 250 padded to 256, backbone.embedding.weight, ssm_cfg, tied; 8 heads of
    # 10 channels in 2 groups, chunk 6
    "mamba2_original_layout": (
        dict(vocab_size=256, hidden_size=40, num_heads=8, head_dim=10, state_size=8, n_groups=2, chunk_size=6,
             conv_kernel=4, tie_word_embeddings=True),
        "original",
    ),
}


def randomize(model, generator):
    """Give every parameter values that matter: non-zero biases, varied A, dt, D and norms."""

    def normal(tensor, mean, std):
        return mean + std * torch.randn(tensor.shape, generator=generator)

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("A_log"):  # A = -exp(A_log) in (-20, -0.3): slow and fast decays
                param.copy_(torch.empty(param.shape).uniform_(math.log(0.3), math.log(20), generator=generator))
            elif name.endswith("dt_bias"):  # softplus(bias) = dt, log-uniform in [1e-3, 0.3]
                dt = torch.exp(torch.empty(param.shape).uniform_(math.log(1e-3), math.log(0.3), generator=generator))
                param.copy_(dt + torch.log(-torch.expm1(-dt)))
            elif name.endswith("mixer.D"):
                param.copy_(normal(param, 1.0, 0.5))
            elif name.endswith("norm_f.weight"):  # random signs: a tied lm_head then does not
                param.copy_(normal(param, 0.0, 1.0))  # simply echo the current token's embedding
            elif name.endswith("norm.weight"):  # the blocks' RMSNorm and the mixers' gated one
                param.copy_(normal(param, 1.0, 0.3))
            elif name.endswith("embeddings.weight"):
                param.copy_(normal(param, 0.0, 0.3))
            elif name.endswith("bias"):
                param.copy_(normal(param, 0.0, 0.2))
            elif name == "lm_head.weight":
                param.copy_(normal(param, 0.0, 1.0))
            elif name.endswith("out_proj.weight"):  # let the mixers, not the embedding, dominate
                param.mul_(4.0)


def save(model, folder, how):
    if how == "original":
        save_original(model, folder)
        return
    dtype, shard_size = (None, None) if isinstance(how, str) else how[1:]
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder, **({"max_shard_size": shard_size} if shard_size else {}))
    if os.path.exists(os.path.join(folder, "generation_config.json")):
        os.remove(os.path.join(folder, "generation_config.json"))  # not part of the checkpoint format


def save_original(model, folder):
    """The state-spaces/mamba layout of a Mamba-2 (as state-spaces/mamba2-130m ships it: mamba_ssm's
    MambaConfig with ssm_cfg.layer "Mamba2"), in safetensors with the tied lm_head left out."""
    c = model.config
    os.makedirs(folder)
    tensors = {
        key.replace("backbone.embeddings.", "backbone.embedding."): value.contiguous()
        for key, value in model.state_dict().items()
        if key != "lm_head.weight"
    }
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    write_json(os.path.join(folder, "config.json"), {
        "d_model": c.hidden_size,
        "d_intermediate": 0,
        "n_layer": c.num_hidden_layers,
        "vocab_size": ORIGINAL_VOCAB,
        "ssm_cfg": {"layer": "Mamba2", "d_state": c.state_size, "d_conv": c.conv_kernel, "expand": c.expand,
                    "headdim": c.head_dim, "ngroups": c.n_groups, "chunk_size": c.chunk_size},
        "attn_layer_idx": [],
        "attn_cfg": {},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": 16,
        "tie_embeddings": True,
    })
    assert math.ceil(ORIGINAL_VOCAB / 16) * 16 == c.vocab_size


def make(name, config_args, how):
    dtype = None if isinstance(how, str) else how[1]
    for seed in range(100):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = Mamba2ForCausalLM(Mamba2Config(num_hidden_layers=2, **config_args)).eval()
        randomize(model, generator)
        if dtype is not None:
            round_to(model, dtype)
        vocab = ORIGINAL_VOCAB if how == "original" else config_args["vocab_size"]
        prompt = torch.randint(0, vocab, (PROMPT_LEN,), generator=generator).tolist()
        logits, greedy, margin = reference(model, prompt)
        if margin >= MIN_MARGIN and len(set(greedy.tolist())) >= MIN_DISTINCT:
            break
    else:
        raise RuntimeError(f"{name}: every seed has a near-tie or a repetitive greedy path")
    folder = os.path.join(FIXTURES, name)
    shutil.rmtree(folder, ignore_errors=True)
    save(model, folder, how)
    np.savez(os.path.join(folder, "expected.npz"), prompt_ids=np.array(prompt, np.int64),
             logits=logits.astype(np.float32), greedy_ids=greedy.astype(np.int64))
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"{name:24} seed {seed}  max|logit| {np.abs(logits).max():6.2f}  greedy margin {margin:.4f}  "
          f"{size / 1024:5.0f} KiB  greedy {greedy.tolist()[:10]}...")


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    for name, (config_args, how) in CASES.items():
        make(name, config_args, how)


if __name__ == "__main__":
    main()
