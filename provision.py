"""What the tests, benchmarks and add-model need beyond build.py: a virtual environment with
requirements-test.txt, and a system Chromium. Standard library only.

    provision.ensure_venv()      .venv/bin/python, after `pip install -r requirements-test.txt` when
                                 the requirements changed since the last install
    provision.ensure_chromium()  a system Chromium ($MAMBA_WASM_CHROMIUM, else on PATH); installs
                                 Debian's when none is found and this runs as root
    provision.find_chromium()    the same without installing; CHROMIUM_FLAGS, its headless flags

build.py's `test`, `bench` and `add-model` commands run through the run_* functions below; the
end-to-end tests and bench/ import this module for find_chromium and CHROMIUM_FLAGS. Chromium is
never downloaded (no `playwright install`).
"""

import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent
VENV = ROOT / ".venv"
CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
# Headless launch flags for the tests and benchmarks: without the background-networking ones,
# Chromium keeps trying to reach Google's hosts, which a closed network refuses.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


class ProvisionError(Exception):
    """A missing tool the user can install; printed without a traceback."""


def log(message):
    print(f"[build] {message}", flush=True)


def find_chromium():
    """A system Chromium: $MAMBA_WASM_CHROMIUM, else the first of CHROMIUM_NAMES on PATH; None."""
    override = os.environ.get("MAMBA_WASM_CHROMIUM")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise ProvisionError(f"MAMBA_WASM_CHROMIUM={override} is not an executable file")
        return override
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium():
    """find_chromium(), else Debian's chromium installed with apt-get (as root), else an error
    that says what to install."""
    path = find_chromium()
    if path:
        return path
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise ProvisionError("no Chromium found (tried $MAMBA_WASM_CHROMIUM, "
                             f"{', '.join(CHROMIUM_NAMES)}). Install one, e.g. as root on Debian: "
                             "apt-get update && apt-get install -y chromium")
    log("installing Debian's chromium (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", "chromium"]):
        if subprocess.run(command, env=env).returncode != 0:
            raise ProvisionError(f"`{' '.join(command)}` failed")
    path = find_chromium()
    if path is None:
        raise ProvisionError("apt-get installed chromium, but no chromium is on PATH")
    return path


def ensure_venv():
    """.venv with requirements-test.txt installed; pip runs only when a requirements file changed."""
    python = VENV / "bin" / "python"
    if not python.is_file():
        log("creating .venv")
        if subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode != 0:
            raise ProvisionError("python3 -m venv failed (Debian: apt-get install -y python3-venv)")
    requirements = ROOT / "requirements-test.txt"
    want = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(ROOT.glob("requirements*.txt"))))
    stamp = VENV / ".requirements.sha256"
    if stamp.is_file() and stamp.read_text().strip() == want.hexdigest():
        return python
    log("pip install -r requirements-test.txt")
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(requirements)]
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise ProvisionError("pip install -r requirements-test.txt failed")
    stamp.write_text(want.hexdigest())
    return python


def run_tests(python, chromium, pytest_args):
    """pytest over tests/ with `python` (from ensure_venv), the site already built; exit code."""
    env = {**os.environ, "MAMBA_WASM_CHROMIUM": chromium, "MAMBA_WASM_DIST_BUILT": "1"}
    command = [str(python), "-m", "pytest", "tests", *pytest_args]
    log(" ".join(command[2:]))
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def run_add_model(args):
    """scripts/add_model.py needs NumPy (torch only for pytorch_model.bin): run it with .venv's
    Python when there is one, else with this one when it has NumPy, else make .venv first."""
    python = VENV / "bin" / "python"
    if not python.is_file():
        python = sys.executable if importlib.util.find_spec("numpy") else ensure_venv()
    return subprocess.run([str(python), str(ROOT / "scripts" / "add_model.py"), *args]).returncode


def run_bench(args):
    """The benchmarks (bench/__main__.py) with .venv's Python: they need Playwright, torch and
    transformers, and a Chromium."""
    env = {**os.environ, "MAMBA_WASM_CHROMIUM": ensure_chromium()}
    python = ensure_venv()
    return subprocess.run([str(python), "-m", "bench", *args], cwd=ROOT, env=env).returncode
