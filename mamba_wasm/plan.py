"""What a checkpoint is, from its config.json alone: what the page shows before downloading it.

The web worker calls `describe_config` as soon as it has config.json (Python has started by then),
so the parameter count, the float32 size and the state size come from the same config mapping that
loads the model (config.py), for every architecture the package reads, with no copy in JavaScript.
"""

from collections import Counter

from .checkpoint import max_weight_bytes
from .config import config_from_json
from .errors import GGUFTruncatedError
from .gguf import read_gguf
from .gguf_checkpoint import config_from_gguf, weight_bytes
from .gguf_quants import SUPPORTED

TOKENIZER_FILE = "tokenizer.json"  # beside config.json: the page fetches it with the weights


def describe_config(text, source="config.json"):
    """config.json (str or bytes) -> describe(its config). Raises ConfigError naming `source` when
    the file is not a config we read."""
    return describe(config_from_json(text, source))


def describe_gguf(prefix, source="model.gguf", packed=False):
    """The first bytes of a .gguf file, through its tensor table (GGUFFile.data_start: 1-2 MB for a
    50k vocabulary, most of it the tokenizer) -> describe(its config), how its tensors are stored,
    and the bytes its weights will take in memory (loaded `packed` or not: gguf_checkpoint.py).
    Raises GGUFError naming `source` when those bytes are not enough or not a file we read."""
    gguf = read_gguf(prefix, source, header_only=True)
    types = Counter(tensor.ggml_type.name for tensor in gguf.tensors.values())
    return {
        **describe(config_from_gguf(gguf)),
        "header_bytes": gguf.data_start,
        "tensor_types": dict(types),  # e.g. {"F32": 98, "Q8_0": 73}
        "unsupported_types": sorted(set(types) - set(SUPPORTED)),  # any: loading the file will fail
        "quantization": quantization(types),
        "weight_bytes": weight_bytes(gguf, packed),
    }


def describe_gguf_prefix(prefix, file_size, source="model.gguf", packed=False):
    """describe_gguf of a file's first bytes, or None when they end before its tensor table does
    and the file has more (the page then reads a longer prefix). A prefix that is the whole file
    and still ends too soon is a truncated file: GGUFTruncatedError, like any corrupt header."""
    try:
        return describe_gguf(prefix, source, packed)
    except GGUFTruncatedError:
        if len(prefix) < file_size:
            return None
        raise


FLOAT_TYPES = ("F32", "F16", "BF16")


def quantization(types):
    """How a file's matrices are stored, from {type name: tensor count}: its quantized types (a
    Q4_K_M file: "Q4_K/Q6_K mix"), else its float types other than F32 ("F16"), else "F32". The
    converter keeps 1-D tensors in F32, and rows narrower than a block in F16, in every file."""
    quantized = sorted(set(types) - set(FLOAT_TYPES))
    names = quantized or sorted(set(types) - {"F32"}) or ["F32"]
    return names[0] if len(names) == 1 else "/".join(names) + " mix"


def describe(config):
    """A plain dict of JSON numbers and strings (it crosses to JavaScript) of what `config` is."""
    n_params = config.n_params()
    return {
        "architecture": config.architecture,
        "n_params": n_params,
        "float32_bytes": 4 * n_params,
        # the most the weight files may hold, before HEADER_SLACK_BYTES per file (facts.js)
        "max_weight_bytes": max_weight_bytes(config, n_files=0),
        "state_nbytes": config.state_nbytes(),
        "vocab_size": config.vocab_size,
        "n_layer": config.n_layer,
        "d_model": config.d_model,
    }
