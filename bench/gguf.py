"""Load time and decode speed in Pyodide of a mamba-130m-shaped model from llama.cpp .gguf files.

    python3 bench/gguf.py [--tokens 128]

Natively: the random 130m-shaped checkpoint (bench/models.py) is converted with llama.cpp's
convert_hf_to_gguf.py (tests/make_gguf_fixtures.py fetches it) to F16 and Q8_0 files in
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

TYPES = {"F16": "f16", "Q8_0": "q8_0"}


def ensure_gguf_files():
    import make_gguf_fixtures

    folder = ensure_130m_shaped()
    jobs = [(str(folder), outtype, str(CACHE / f"mamba-130m-shaped-{name}.gguf"))
            for name, outtype in TYPES.items() if not (CACHE / f"mamba-130m-shaped-{name}.gguf").exists()]
    if jobs:
        make_gguf_fixtures.fetch_converter()
        make_gguf_fixtures.convert(jobs)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    folder = ensure_gguf_files()
    files = [folder] + [CACHE / f"mamba-130m-shaped-{name}.gguf" for name in TYPES]
    files = [str(path.relative_to(ROOT)) for path in files]
    (CACHE / "gguf_plan.json").write_text(json.dumps({"files": files, "tokens": args.tokens}))
    subprocess.run(["node", str(ROOT / "bench" / "run_in_pyodide.mjs"), str(ROOT / "bench" / "gguf_in_pyodide.py")],
                   check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
