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

import os

import torch
from transformers import Mamba2Config, Mamba2ForCausalLM

from make_model_fixtures import FIXTURES, make, save_state_spaces

PROMPT_LEN = 20

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


def save_original(model, folder):
    """The state-spaces/mamba layout of a Mamba-2 (as state-spaces/mamba2-130m ships it: mamba_ssm's
    MambaConfig with ssm_cfg.layer "Mamba2"), in safetensors with the tied lm_head left out."""
    c = model.config
    save_state_spaces(model, folder, {"layer": "Mamba2", "d_state": c.state_size, "d_conv": c.conv_kernel,
                                      "expand": c.expand, "headdim": c.head_dim, "ngroups": c.n_groups,
                                      "chunk_size": c.chunk_size}, pad_multiple=16)


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    for name, (config_args, how) in CASES.items():
        make(name, config_args, how, new_model=lambda args: Mamba2ForCausalLM(Mamba2Config(**args)),
             save_original=save_original, prompt_len=PROMPT_LEN)


if __name__ == "__main__":
    main()
