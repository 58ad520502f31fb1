"""Write the golden model fixtures: tiny random Mamba checkpoints and HF transformers' outputs.

    python3 tests/make_model_fixtures.py     # needs torch, transformers 5.x, safetensors

For each case in CASES, tests/fixtures/models/<name>/ gets a checkpoint folder (config.json +
safetensors) and expected.npz holding
    prompt_ids  (12,)      int64    random token ids
    logits      (12, v)    float32  MambaForCausalLM(prompt_ids).logits, eval mode, no cache
    greedy_ids  (32,)      int64    model.generate(do_sample=False, max_new_tokens=32), i.e.
                                    HF's own prefill + cached single-step path
The reference always runs in float32. For the F16 and BF16 cases the weights are first
rounded to that dtype, so the reference computes with exactly the numbers the file holds and
our loader's float32 upcast reproduces them bit for bit.

Weights are randomized beyond HF's initialisation (which zeroes biases, uses A = 1..n for every
channel and unit norm scales) so that every parameter changes the logits. Each case's seed is
chosen so that no greedy step has a near-tie (top-2 margin >= MIN_MARGIN), where a tiny float
difference could flip an argmax and make the test flaky, and the greedy path does not get stuck
repeating a few tokens.
"""

import json
import math
import os
import shutil

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import MambaConfig, MambaForCausalLM

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "models")
PROMPT_LEN = 12
NEW_TOKENS = 32
MIN_MARGIN = 1e-2
MIN_DISTINCT = 3  # distinct greedy tokens: a path stuck on one token would test little

# name -> (transformers MambaConfig arguments, how to save)
# save: "hf" | "hf_auto_rank" (config.json says time_step_rank "auto") | "original" |
#       ("hf", dtype, max_shard_size)
CASES = {
    # tied lm_head, in/out projection biases, conv bias, d_state 16, expand 2, k 4, rank 'auto'
    "hf_tied_bias": (
        dict(vocab_size=96, hidden_size=32, state_size=16, expand=2, conv_kernel=4, use_bias=True,
             use_conv_bias=True, tie_word_embeddings=True),
        "hf_auto_rank",
    ),
    # untied lm_head, no biases at all, d_state 4, expand 1, k 2, explicit rank 5
    "hf_untied_nobias": (
        dict(vocab_size=200, hidden_size=24, state_size=4, expand=1, conv_kernel=2, use_bias=False,
             use_conv_bias=False, time_step_rank=5, tie_word_embeddings=False),
        "hf",
    ),
    # untied, projection biases without conv bias, k 3, rank 3, epsilon 1e-6
    "hf_untied_k3": (
        dict(vocab_size=150, hidden_size=20, state_size=8, expand=2, conv_kernel=3, use_bias=True,
             use_conv_bias=False, time_step_rank=3, layer_norm_epsilon=1e-6, tie_word_embeddings=False),
        "hf",
    ),
    # state-spaces layout: vocab 250 padded to 256, backbone.embedding.weight, ssm_cfg, tied
    "original_layout": (
        dict(vocab_size=256, hidden_size=40, state_size=8, expand=2, conv_kernel=4,
             tie_word_embeddings=True),
        "original",
    ),
    # float16, sharded with model.safetensors.index.json, tied, projection biases
    "f16_sharded": (
        dict(vocab_size=128, hidden_size=32, state_size=16, expand=2, conv_kernel=4, use_bias=True,
             tie_word_embeddings=True),
        ("hf", torch.float16, "24KB"),
    ),
    # bfloat16, one file, untied
    "bf16": (
        dict(vocab_size=64, hidden_size=16, state_size=16, expand=2, conv_kernel=4,
             tie_word_embeddings=False),
        ("hf", torch.bfloat16, None),
    ),
}
ORIGINAL_VOCAB = 250  # state-spaces layouts: before padding (Mamba-1 to a multiple of 8, Mamba-2 of 16)


def randomize(model, generator):
    """Give every parameter values that matter: non-zero biases, varied A, dt, D and norms."""

    def normal(tensor, mean, std):
        return mean + std * torch.randn(tensor.shape, generator=generator)

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("A_log"):  # A = -exp(A_log) in (-20, -0.3): slow and fast decays
                param.copy_(torch.empty(param.shape).uniform_(math.log(0.3), math.log(20), generator=generator))
            elif name.endswith(("dt_proj.bias", "dt_bias")):  # softplus(bias) = dt, log-uniform in [1e-3, 0.3]
                dt = torch.exp(torch.empty(param.shape).uniform_(math.log(1e-3), math.log(0.3), generator=generator))
                param.copy_(dt + torch.log(-torch.expm1(-dt)))
            elif name.endswith("mixer.D"):
                param.copy_(normal(param, 1.0, 0.5))
            elif name.endswith("norm_f.weight"):  # random signs: a tied lm_head then does not
                param.copy_(normal(param, 0.0, 1.0))  # simply echo the current token's embedding
            elif name.endswith("norm.weight"):  # the blocks' RMSNorm (and Mamba-2's gated one)
                param.copy_(normal(param, 1.0, 0.3))
            elif name.endswith("embeddings.weight"):
                param.copy_(normal(param, 0.0, 0.3))
            elif name.endswith("bias"):
                param.copy_(normal(param, 0.0, 0.2))
            elif name == "lm_head.weight":
                param.copy_(normal(param, 0.0, 1.0))
            elif name.endswith("out_proj.weight"):  # let the mixers, not the embedding, dominate
                param.mul_(4.0)


def round_to(model, dtype):
    """Round every weight to `dtype` and back, so the float32 reference uses the file's values."""
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.to(dtype).float())


def reference(model, prompt):
    """HF's logits for the prompt (no cache) and its greedy continuation, plus the smallest
    top-2 margin along the greedy path."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits[0]
        out = model.generate(ids, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             eos_token_id=None, pad_token_id=None, output_logits=True,
                             return_dict_in_generate=True)
    greedy = out.sequences[0, len(prompt):]
    top2 = torch.stack(out.logits)[:, 0].topk(2, dim=-1).values
    return logits.numpy(), greedy.numpy(), (top2[:, 0] - top2[:, 1]).min().item()


def save(model, folder, how, save_original):
    """Write the checkpoint as `how` says; "original" is the architecture's own state-spaces writer."""
    if how == "original":
        save_original(model, folder)
        return
    dtype, shard_size = (None, None) if isinstance(how, str) else how[1:]
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder, **({"max_shard_size": shard_size} if shard_size else {}))
    if how == "hf_auto_rank":
        path = os.path.join(folder, "config.json")
        with open(path) as file:
            config = json.load(file)
        assert config["time_step_rank"] == math.ceil(config["hidden_size"] / 16)
        config["time_step_rank"] = "auto"
        write_json(path, config)
    if os.path.exists(os.path.join(folder, "generation_config.json")):
        os.remove(os.path.join(folder, "generation_config.json"))  # not part of the checkpoint format


def save_original(model, folder):
    """The state-spaces/mamba layout, as mamba_ssm's MambaLMHeadModel.save_pretrained writes it
    (mamba_ssm/models/config_mamba.py), in safetensors and with the tied lm_head left out."""
    c = model.config
    save_state_spaces(model, folder, {"layer": "Mamba1", "d_state": c.state_size, "d_conv": c.conv_kernel,
                                      "expand": c.expand}, pad_multiple=8)


def save_state_spaces(model, folder, ssm_cfg, pad_multiple):
    """A state-spaces checkpoint folder: backbone.embedding.weight, no lm_head (tied), and
    mamba_ssm's MambaConfig with ORIGINAL_VOCAB padded to `pad_multiple` in the model."""
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
        "ssm_cfg": ssm_cfg,
        "attn_layer_idx": [],
        "attn_cfg": {},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": pad_multiple,
        "tie_embeddings": True,
    })
    assert math.ceil(ORIGINAL_VOCAB / pad_multiple) * pad_multiple == c.vocab_size


def write_json(path, value):
    with open(path, "w") as file:
        json.dump(value, file, indent=2)
        file.write("\n")


def make(name, config_args, how, new_model=lambda args: MambaForCausalLM(MambaConfig(**args)),
         save_original=save_original, prompt_len=PROMPT_LEN):
    """Find the first seed without near-ties (see the docstring), then write the checkpoint folder
    and expected.npz. `new_model` builds the transformers model from config arguments."""
    dtype = None if isinstance(how, str) else how[1]
    for seed in range(100):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = new_model(dict(num_hidden_layers=2, **config_args)).eval()
        randomize(model, generator)
        if dtype is not None:
            round_to(model, dtype)
        vocab = ORIGINAL_VOCAB if how == "original" else config_args["vocab_size"]
        prompt = torch.randint(0, vocab, (prompt_len,), generator=generator).tolist()
        logits, greedy, margin = reference(model, prompt)
        if margin >= MIN_MARGIN and len(set(greedy.tolist())) >= MIN_DISTINCT:
            break
    else:
        raise RuntimeError(f"{name}: every seed has a near-tie or a repetitive greedy path")
    folder = os.path.join(FIXTURES, name)
    shutil.rmtree(folder, ignore_errors=True)
    save(model, folder, how, save_original)
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
