"""Security checks that need no browser (docs/RELIABILITY.md, page-level rows):

- the page's scripts never turn strings into HTML or code (the e2e tests show that markup in a
  prompt stays text, and that the Content-Security-Policy refuses inline and eval'd code);
- converting a PyTorch checkpoint never runs its pickle's code: torch.load(weights_only=True).
"""

import ast
import os
import pathlib
import re
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import add_model  # noqa: E402

# Every way a string becomes markup or code in a page.
FORBIDDEN = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\s*\(|"
                       r"new\s+Function\b|setTimeout\s*\(\s*[\"'`]|setInterval\s*\(\s*[\"'`]|"
                       r"createContextualFragment|srcdoc)")


def _code_only(source):
    """JavaScript without its comments and string contents (a comment may name what it avoids)."""
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    source = re.sub(r"(?m)(^|[^:\\])//.*$", r"\1", source)
    return re.sub(r"([\"'`])(?:\\.|(?!\1).)*\1", '""', source)


def test_page_scripts_never_build_html_or_code_from_strings():
    scripts = sorted((ROOT / "web").glob("*.js"))
    assert any(p.name == "app.js" for p in scripts) and any(p.name == "worker.js" for p in scripts)
    found = [f"{p.name}: {m.group(0)}" for p in scripts for m in FORBIDDEN.finditer(_code_only(p.read_text()))]
    assert not found, found


def test_the_grep_would_catch_each_forbidden_use():
    for line in ["el.innerHTML = t", "el.outerHTML = t", "el.insertAdjacentHTML('beforeend', t)",
                 "eval(t)", "new Function(t)", "document.write(t)", "setTimeout('x()', 1)"]:
        assert FORBIDDEN.search(_code_only(line)), line
    assert not FORBIDDEN.search(_code_only("el.textContent = t; // never innerHTML"))


def test_every_torch_load_in_the_converter_is_weights_only():
    tree = ast.parse((ROOT / "scripts" / "add_model.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
             and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"]
    assert calls, "add_model.py no longer calls torch.load: update this test"
    for call in calls:
        weights_only = [k.value for k in call.keywords if k.arg == "weights_only"]
        assert weights_only and isinstance(weights_only[0], ast.Constant) and weights_only[0].value is True, \
            f"torch.load at line {call.lineno} without weights_only=True"


class _RunsCode:
    """A pickle that would create a file when unpickled by a full (unsafe) load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_is_refused_and_its_code_never_runs(tmp_path):
    import torch
    source = tmp_path / "source"
    source.mkdir()
    (tmp_path / "models").mkdir()
    shutil.copyfile(ROOT / "models" / "tiny-random" / "config.json", source / "config.json")
    marker = tmp_path / "pwned"
    torch.save({"backbone.embeddings.weight": _RunsCode(str(marker))}, source / "pytorch_model.bin")
    with pytest.raises(add_model.ConversionError, match=r"torch\.load\(weights_only=True\) failed"):
        add_model.add_model(str(source), str(tmp_path / "models"),
                            tokenizer=str(ROOT / "models" / "tiny-random" / "tokenizer.json"),
                            log=lambda message: None)
    assert not os.path.exists(marker), "unpickling ran the file's code"
