"""The checkpoints the benchmarks run: the site's default model and random ones, shaped like
mamba-130m, like mamba2-130m and like mamba-790m (3.2 GB as float32: over one worker's heap limit,
for the split-across-workers benchmark).

The random ones have those models' exact shapes (transformers' MambaConfig with hidden_size 768,
24 layers, vocab 50280; Mamba2Config with hidden_size 768, 24 layers, state_size 128, head_dim 64,
expand 2, n_groups 1, vocab 50280) and are written with save_pretrained into .cache/bench/, never
committed.
"""

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
MAMBA_130M_SHAPED = CACHE / "mamba-130m-shaped"
MAMBA2_130M_SHAPED = CACHE / "mamba2-130m-shaped"
MAMBA_790M_SHAPED = CACHE / "mamba-790m-shaped"


def default_model_dir():
    index = json.loads((ROOT / "models" / "index.json").read_text())
    entry = next(m for m in index["models"] if m["name"] == index["default"])
    return ROOT / "models" / entry.get("path", entry["name"])


def ensure_130m_shaped():
    """Write the random 130m-shaped checkpoint once (needs torch and transformers)."""
    from transformers import MambaConfig, MambaForCausalLM

    return _ensure(MAMBA_130M_SHAPED, MambaForCausalLM, MambaConfig(hidden_size=768, num_hidden_layers=24,
                                                                    vocab_size=50280))


def ensure_790m_shaped():
    """Write the random 790m-shaped checkpoint once (d 1536, 48 layers: 3.2 GB of float32 weights;
    needs torch, transformers and ~7 GB of RAM while it is written)."""
    from transformers import MambaConfig, MambaForCausalLM

    return _ensure(MAMBA_790M_SHAPED, MambaForCausalLM, MambaConfig(hidden_size=1536, num_hidden_layers=48,
                                                                    vocab_size=50280))


def ensure_mamba2_130m_shaped():
    """Write the random mamba2-130m-shaped checkpoint once (needs torch and transformers)."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    config = Mamba2Config(hidden_size=768, num_hidden_layers=24, vocab_size=50280, state_size=128, head_dim=64,
                          num_heads=24, expand=2, n_groups=1, tie_word_embeddings=True)
    return _ensure(MAMBA2_130M_SHAPED, Mamba2ForCausalLM, config)


def _ensure(folder, model_class, config):
    if (folder / "tokenizer.json").exists():
        return folder
    import torch

    torch.manual_seed(0)
    model_class(config).save_pretrained(folder, safe_serialization=True)
    # The page needs a tokenizer.json to load a model; the ids a benchmark feeds are random anyway.
    shutil.copy(default_model_dir() / "tokenizer.json", folder / "tokenizer.json")
    return folder
