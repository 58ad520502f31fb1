"""provision.py: the Chromium the tests and benchmarks drive, and build.py's commands that go through it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import provision

ROOT = Path(__file__).resolve().parent.parent


def test_chromium_is_found_by_override_then_on_path(tmp_path, monkeypatch):
    browser = tmp_path / "my-chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    monkeypatch.setenv("MAMBA_WASM_CHROMIUM", str(browser))
    assert provision.find_chromium() == str(browser)
    monkeypatch.setenv("MAMBA_WASM_CHROMIUM", str(tmp_path / "missing"))
    with pytest.raises(provision.ProvisionError, match="MAMBA_WASM_CHROMIUM"):
        provision.find_chromium()
    monkeypatch.delenv("MAMBA_WASM_CHROMIUM")
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "chromium-browser").symlink_to(browser)
    assert provision.find_chromium() == str(tmp_path / "chromium-browser")


def test_no_chromium_and_not_root_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMBA_WASM_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(provision.os, "geteuid", lambda: 1000)
    with pytest.raises(provision.ProvisionError, match="apt-get install -y chromium"):
        provision.ensure_chromium()


def test_build_py_reports_a_provisioning_error_without_a_traceback(tmp_path):
    env = {**os.environ, "MAMBA_WASM_CHROMIUM": str(tmp_path / "missing")}
    done = subprocess.run([sys.executable, str(ROOT / "build.py"), "bench", "--quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == f"build.py: error: MAMBA_WASM_CHROMIUM={tmp_path / 'missing'} is not an executable file\n"


def test_build_py_add_model_runs_the_script_from_any_directory(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "build.py"), "add-model", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: build.py add-model")
