"""mamba-wasm: Mamba and Mamba-2 language models in pure NumPy, for the browser (Pyodide) and natively.

    model, tok = from_pretrained("models/shakespeare")   # config.json, *.safetensors, tokenizer.json
    # or a llama.cpp file: from_pretrained("mamba-130m.Q8_0.gguf") (model and tokenizer in one file)
    for piece in generate(model, tok, "ROMEO.", max_new_tokens=100, temperature=0.8, seed=11):
        print(piece, end="")

Learners: mamba_wasm/reference.py is the step in the paper's notation; model.py the fast one.
"""

from .checkpoint import from_pretrained, load_model, load_model_from_files
from .config import Mamba2Config, MambaConfig
from .detokenizer import StreamingDetokenizer
from .errors import (
    CheckpointError,
    ConfigError,
    GGUFError,
    InputError,
    MambaWasmError,
    SafetensorsError,
    TokenizerError,
)
from .generation import Session, generate
from .inspection import Probe
from .mamba2 import Mamba2
from .model import Mamba, MambaState
from .sampling import Sampler, SamplingParams
from .scoring import Score, score, score_ids
from .token_probabilities import Alternative, TokenProbabilities
from .tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = [
    "Alternative",
    "CheckpointError",
    "ConfigError",
    "GGUFError",
    "InputError",
    "Mamba",
    "Mamba2",
    "Mamba2Config",
    "MambaConfig",
    "MambaState",
    "MambaWasmError",
    "Probe",
    "SafetensorsError",
    "Sampler",
    "SamplingParams",
    "Score",
    "Session",
    "StreamingDetokenizer",
    "TokenProbabilities",
    "Tokenizer",
    "TokenizerError",
    "from_pretrained",
    "generate",
    "load_model",
    "load_model_from_files",
    "score",
    "score_ids",
]
