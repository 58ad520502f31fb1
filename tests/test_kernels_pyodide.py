"""The real SIMD kernels (web/kernels/matmul.wat, assembled by build.py) in real Pyodide under Node
(the same V8 WebAssembly engine as Chromium), installed as the page's worker installs them
(web/kernels.js), against NumPy in float64 on the dequantized matrices: float32 and Q8_0; shapes
with tails of every size, one row, one column, l = 1 and l > 1, an unaligned weight and a
non-contiguous x (tests/kernels_in_pyodide.py).

Tolerance: the kernels sum in float32 in another order than NumPy; measured, the largest error
relative to the output's largest magnitude was 1.9e-7 over all cases (in = 768: a sum of 768
products); 1e-6 leaves room for other inputs, and a wrong lane, block or tail is off by ~1.
Q8_0 rounds x to 16 bits per block of 32 (matmul.wat says why): its cases measure the error beyond
that rounding's own bound (held to the same 1e-6), and "(x rounded)" the whole error, measured 4e-6
to 1.3e-5 of sum |x w| here; ROUNDED_TOLERANCE = 5e-5.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import build  # noqa: E402

TOLERANCE = 1e-6
ROUNDED_TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def results():
    node = shutil.which("node")
    assert node, "node is needed to run Pyodide (build.py needs it too)"
    build.fetch_numpy_wheel()  # .cache/wheels, which the runner loads NumPy from
    (kernel,) = [data for rel, data in build.assembled_kernels() if rel == "kernels/matmul.wasm"]
    wasm = build.KERNEL_CACHE / "test-matmul.wasm"
    wasm.write_bytes(kernel)
    result = subprocess.run([node, str(ROOT / "bench" / "run_in_pyodide.mjs"), "--kernels", str(wasm),
                             str(ROOT / "tests" / "kernels_in_pyodide.py")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_kernels_were_installed_and_used(results):
    assert results["backend"] == "wasm-simd128"


def test_every_shape_and_type_matches_numpy(results):
    results = {case: error for case, error in results.items() if case != "backend"}
    for kind in ("f32", "q8_0"):
        assert any(case.startswith(kind) for case in results), kind
    assert any("l=70" in case for case in results) and any("l=None" in case for case in results)
    wrong = {case: error for case, error in results.items()
             if not error <= (ROUNDED_TOLERANCE if case.endswith("(x rounded)") else TOLERANCE)}
    assert not wrong, wrong
