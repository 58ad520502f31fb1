"""The Mamba-2 training path (scripts/fast_mamba2.py) must equal HF Mamba2ForCausalLM.

Same random weights in both; compares logits and every parameter's gradient of a cross-entropy
loss, over chunk lengths that do and don't divide the sequence and 1 or 2 groups. Tolerance:
max |difference| <= 1e-4 * (1 + max |reference|) in float32 (a different summation order).
"""

import os
import sys

import pytest

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import fast_mamba2  # noqa: E402


def _close(ours, ref, name, rtol=1e-4):
    err = (ours - ref).abs().max().item()
    bound = rtol * (1.0 + ref.abs().max().item())
    assert err <= bound, f"{name}: max |diff| {err:.3g} > {bound:.3g}"


def _pair(cfg, seed=0):
    torch.manual_seed(seed)
    ours = fast_mamba2.FastMamba2LM(cfg)
    with torch.no_grad():  # random, non-trivial values everywhere (norms, D, A_log, biases too)
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    hf_cfg = transformers.Mamba2Config(**{k: v for k, v in cfg.hf_dict().items() if k != "architectures"})
    ref = transformers.Mamba2ForCausalLM(hf_cfg).float()
    missing, unexpected = ref.load_state_dict(ours.hf_state_dict(), strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    ref.tie_weights()
    assert ref.lm_head.weight.data_ptr() == ref.backbone.embeddings.weight.data_ptr()
    return ours, ref


@pytest.mark.parametrize("state_size,head_dim,n_groups,chunk_size,length", [
    (16, 16, 1, 16, 37),   # the last chunk is partial
    (8, 8, 2, 8, 32),      # chunks divide the length; two groups share B and C among 4 heads each
    (32, 32, 1, 64, 20),   # one chunk longer than the sequence
])
def test_logits_and_gradients_match_hf(state_size, head_dim, n_groups, chunk_size, length):
    cfg = fast_mamba2.Mamba2Config(vocab_size=97, hidden_size=32, num_hidden_layers=2, state_size=state_size,
                                   head_dim=head_dim, n_groups=n_groups, chunk_size=chunk_size)
    ours, ref = _pair(cfg)
    ids = torch.randint(0, 97, (3, length), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 97, (3, length), generator=torch.Generator().manual_seed(2))

    logits = ours(ids)
    ref_logits = ref(ids).logits
    _close(logits, ref_logits, "logits")

    loss_fn = torch.nn.functional.cross_entropy
    loss_fn(logits.reshape(-1, 97), targets.reshape(-1)).backward()
    loss_fn(ref_logits.reshape(-1, 97), targets.reshape(-1)).backward()
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad, ref_params[name].grad, f"grad {name}")


def test_config_refuses_heads_that_do_not_split():
    with pytest.raises(ValueError, match="must split into heads"):
        fast_mamba2.Mamba2Config(vocab_size=97, hidden_size=32, head_dim=24)
