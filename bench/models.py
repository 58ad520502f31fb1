"""The checkpoints the benchmarks run: the site's default model and a mamba-130m-shaped random one.

The random one has mamba-130m's exact shapes (transformers' MambaConfig with hidden_size 768,
24 layers, vocab 50280) and is written with save_pretrained into .cache/bench/, never committed.
"""

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
MAMBA_130M_SHAPED = CACHE / "mamba-130m-shaped"


def default_model_dir():
    index = json.loads((ROOT / "models" / "index.json").read_text())
    entry = next(m for m in index["models"] if m["name"] == index["default"])
    return ROOT / "models" / entry.get("path", entry["name"])


def ensure_130m_shaped():
    """Write the random 130m-shaped checkpoint once (needs torch and transformers)."""
    if (MAMBA_130M_SHAPED / "model.safetensors").exists():
        return MAMBA_130M_SHAPED
    import torch
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    config = MambaConfig(hidden_size=768, num_hidden_layers=24, vocab_size=50280)
    MambaForCausalLM(config).save_pretrained(MAMBA_130M_SHAPED, safe_serialization=True)
    # The page needs a tokenizer.json to load a model; the ids a benchmark feeds are random anyway.
    shutil.copy(default_model_dir() / "tokenizer.json", MAMBA_130M_SHAPED / "tokenizer.json")
    return MAMBA_130M_SHAPED
