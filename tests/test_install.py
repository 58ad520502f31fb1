"""mamba_wasm as an installed package: a wheel built from the checkout installs into a fresh venv
(NumPy comes from PyPI or pip's cache, never from this interpreter's site-packages), and both
`mamba-wasm` and `python -m mamba_wasm` run from another directory."""

import shutil
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

import mamba_wasm

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models" / "tiny-random"
PIP_TIMEOUT_S = 600


def run(command, cwd):
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                          timeout=PIP_TIMEOUT_S)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, wheel path): the package built from a copy of the checkout (so no build
    output lands in it) and installed into a fresh venv without system site-packages."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "mamba_wasm", source / "mamba_wasm", ignore=shutil.ignore_patterns("__pycache__"))
    venv.create(tmp / "venv", with_pip=True, system_site_packages=False)
    bin_dir = tmp / "venv" / "bin"
    pip = [bin_dir / "python", "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run([*pip, "wheel", "--no-deps", "-w", tmp / "wheels", source], cwd=tmp)
    (wheel,) = (tmp / "wheels").glob("*.whl")
    run([*pip, "install", wheel], cwd=tmp)
    return bin_dir, wheel


def test_the_wheel_holds_the_package_and_names_numpy_as_its_only_dependency(installed):
    _, wheel = installed
    assert wheel.name == f"mamba_wasm-{mamba_wasm.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        top_level = {name.split("/")[0] for name in z.namelist()}
        metadata = z.read(f"mamba_wasm-{mamba_wasm.__version__}.dist-info/METADATA").decode()
        entry_points = z.read(f"mamba_wasm-{mamba_wasm.__version__}.dist-info/entry_points.txt").decode()
    assert top_level == {"mamba_wasm", f"mamba_wasm-{mamba_wasm.__version__}.dist-info"}
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert len(requires) == 1 and requires[0].startswith("Requires-Dist: numpy")
    assert "mamba-wasm = mamba_wasm.__main__:main" in entry_points


def test_the_installed_command_and_module_generate_from_another_directory(installed, tmp_path):
    bin_dir, _ = installed
    args = ["generate", MODEL_DIR, "--prompt", "To be", "--max-new-tokens", "12", "--seed", "3", "--no-echo"]
    by_command = run([bin_dir / "mamba-wasm", *args], cwd=tmp_path)
    by_module = run([bin_dir / "python", "-m", "mamba_wasm", *args], cwd=tmp_path)
    model, tokenizer = mamba_wasm.from_pretrained(MODEL_DIR)
    expected = "".join(mamba_wasm.generate(model, tokenizer, "To be", 12, seed=3))
    assert by_command.stdout == by_module.stdout == expected + "\n"
    where = run([bin_dir / "python", "-c", "import mamba_wasm; print(mamba_wasm.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(bin_dir.parent)  # the installed copy, not the checkout


def test_installed_without_a_checkout_the_model_folder_is_required(installed, tmp_path):
    bin_dir, _ = installed
    done = subprocess.run([str(bin_dir / "mamba-wasm"), "generate", "--prompt", "x"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no MODEL_DIR given, and no default model beside the package" in done.stderr
