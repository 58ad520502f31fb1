"""Load time and decode speed in Pyodide of a mamba-130m-shaped model from llama.cpp .gguf files.

    python3 bench/gguf.py [--tokens 128]

Natively: the random 130m-shaped checkpoint (bench/models.py) is converted with llama.cpp's
convert_hf_to_gguf.py (tests/make_gguf_fixtures.py fetches it) to F32, F16 and Q8_0 files in
.cache/bench/, once. Then Node runs bench/gguf_in_pyodide.py in Pyodide 0.27.7 (the browser's
NumPy: no BLAS, no SIMD, the V8 WebAssembly engine Chromium uses) and prints, per file, its size,
the time to read and dequantize it into a model, and the decode speed, beside the same model's f32
safetensors. Every format computes in float32 after loading, so decode speeds should agree.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.models import CACHE, ensure_130m_shaped  # noqa: E402

TYPES = {"F32": "f32", "F16": "f16", "Q8_0": "q8_0"}  # llama.cpp type name -> the converter's --outtype
PYODIDE_TYPES = ("F16", "Q8_0")  # this script's files; bench/wllama.py runs all three


def gguf_path(type_name):
    return CACHE / f"mamba-130m-shaped-{type_name}.gguf"


def ensure_gguf_files(type_names=PYODIDE_TYPES):
    """{type name: path} of the 130m-shaped model's .gguf files, each converted once; the checkpoint
    (and torch) is needed only while one is missing."""
    missing = [name for name in type_names if not gguf_path(name).exists()]
    if missing:
        import make_gguf_fixtures

        folder = str(ensure_130m_shaped())
        make_gguf_fixtures.fetch_converter()
        make_gguf_fixtures.convert([(folder, TYPES[name], str(gguf_path(name))) for name in missing])
    return {name: gguf_path(name) for name in type_names}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    ggufs = ensure_gguf_files()
    files = [ensure_130m_shaped()] + list(ggufs.values())
    files = [str(path.relative_to(ROOT)) for path in files]
    (CACHE / "gguf_plan.json").write_text(json.dumps({"files": files, "tokens": args.tokens}))
    subprocess.run(["node", str(ROOT / "bench" / "run_in_pyodide.mjs"), str(ROOT / "bench" / "gguf_in_pyodide.py")],
                   check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
