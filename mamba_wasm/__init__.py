"""mamba-wasm: Mamba language models in pure NumPy, for the browser (Pyodide) and natively.

    model = load_model("models/shakespeare")
    tok = Tokenizer.from_file("models/shakespeare/tokenizer.json")
    # or a llama.cpp file: load_model("mamba-130m.Q8_0.gguf"), Tokenizer.from_gguf(its bytes)
    for piece in generate(model, tok, "ROMEO:", max_new_tokens=100, seed=0):
        print(piece, end="")
"""

from .checkpoint import load_model, load_model_from_files
from .config import MambaConfig
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
from .model import Mamba, MambaState
from .sampling import Sampler, SamplingParams
from .tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "GGUFError",
    "InputError",
    "Mamba",
    "MambaConfig",
    "MambaState",
    "MambaWasmError",
    "SafetensorsError",
    "Sampler",
    "SamplingParams",
    "Session",
    "StreamingDetokenizer",
    "Tokenizer",
    "TokenizerError",
    "generate",
    "load_model",
    "load_model_from_files",
]
