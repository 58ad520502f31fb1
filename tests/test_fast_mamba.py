"""The fast CPU training path (scripts/fast_mamba.py) must equal HF MambaForCausalLM.

Same random weights in both; compares logits and every parameter's gradient of a
cross-entropy loss. Tolerance: max |difference| <= 1e-4 * (1 + max |reference|) in float32
(the C kernel uses -ffast-math expf and a different summation order than HF's loop).
"""

import os
import sys

import pytest

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import fast_mamba  # noqa: E402


def _close(ours, ref, name, rtol=1e-4):
    err = (ours - ref).abs().max().item()
    bound = rtol * (1.0 + ref.abs().max().item())
    assert err <= bound, f"{name}: max |diff| {err:.3g} > {bound:.3g}"


def _pair(state_size, conv_kernel, seed=0):
    torch.manual_seed(seed)
    cfg = fast_mamba.MambaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2,
                                 state_size=state_size, expand=2, conv_kernel=conv_kernel)
    ours = fast_mamba.FastMambaLM(cfg)
    with torch.no_grad():  # random, non-trivial values everywhere (norms, D, A_log, biases too)
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    hf_cfg = transformers.MambaConfig(**{k: v for k, v in cfg.hf_dict().items() if k != "architectures"})
    ref = transformers.MambaForCausalLM(hf_cfg).float()
    missing, unexpected = ref.load_state_dict(ours.hf_state_dict(), strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    ref.tie_weights()
    assert ref.lm_head.weight.data_ptr() == ref.backbone.embeddings.weight.data_ptr()
    return ours, ref


@pytest.mark.parametrize("state_size,conv_kernel", [(8, 4), (16, 3)])
def test_logits_and_gradients_match_hf(state_size, conv_kernel):
    ours, ref = _pair(state_size, conv_kernel)
    ids = torch.randint(0, 97, (3, 37), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, 97, (3, 37), generator=torch.Generator().manual_seed(2))

    logits = ours(ids)
    ref_logits = ref(ids).logits
    _close(logits, ref_logits, "logits")

    loss_fn = torch.nn.functional.cross_entropy
    loss_fn(logits.reshape(-1, 97), targets.reshape(-1)).backward()
    loss_fn(ref_logits.reshape(-1, 97), targets.reshape(-1)).backward()
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad, ref_params[name].grad, f"grad {name}")
