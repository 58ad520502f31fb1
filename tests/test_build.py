"""build.py: where the NumPy wheel comes from, what dist/ holds, and the errors a user sees.

Each test points build.py's folders at a temporary directory, so the real dist/ and .cache/
are never touched; the NumPy wheel is copied from the real cache (the e2e fixture or an earlier
build fetched it) or, failing that, fetched once by the normal sources.
"""

import gzip
import hashlib
import io
import json
import pathlib
import threading
import urllib.request
import zipfile

import pytest

import build  # the repository root is on sys.path (pyproject.toml's pytest pythonpath)

ROOT = pathlib.Path(__file__).resolve().parents[1]




@pytest.fixture(scope="module")
def numpy_wheel():
    """(name, sha256, bytes) of the real, verified NumPy wheel."""
    build.ensure_node_modules()
    name, sha256 = build.numpy_wheel_spec()
    return name, sha256, build.fetch_numpy_wheel().read_bytes()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """build.py with dist/ and its caches in tmp_path."""
    monkeypatch.setattr(build, "DIST", tmp_path / "dist")
    monkeypatch.setattr(build, "WHEEL_CACHE", tmp_path / "cache" / "wheels")
    monkeypatch.setattr(build, "STAMPS", tmp_path / "cache" / "build")
    monkeypatch.setattr(build, "_HASH_MEMO", tmp_path / "cache" / "build" / "hashes.json")
    monkeypatch.delattr(build.hashed_file, "memo", raising=False)
    monkeypatch.setattr(build, "log", lambda message: None)
    return tmp_path


def failing(reason):
    def source(name, sha256):
        raise build.BuildError(reason)
    return source


def test_every_source_failed_names_each_source_and_why(sandbox, monkeypatch):
    monkeypatch.setattr(build, "NUMPY_SOURCES", [
        ("local cache", build._from_cache),
        ("release", failing("no route to host")),
        ("PyPI", failing("pip download failed: no such version")),
    ])
    with pytest.raises(build.BuildError) as raised:
        build.fetch_numpy_wheel()
    message = str(raised.value)
    assert "every source failed" in message
    for expected in ("local cache", "no numpy-", "release", "no route to host", "PyPI",
                     "no such version"):
        assert expected in message


def test_a_source_with_wrong_bytes_is_refused_and_the_next_one_used(sandbox, monkeypatch,
                                                                   numpy_wheel):
    name, sha256, data = numpy_wheel
    monkeypatch.setattr(build, "NUMPY_SOURCES", [
        ("tampered", lambda n, s: b"not numpy"),
        ("good", lambda n, s: data),
    ])
    path = build.fetch_numpy_wheel()
    assert path.read_bytes() == data and path.parent == build.WHEEL_CACHE


def test_a_corrupt_cached_wheel_is_removed_then_fetched_again(sandbox, monkeypatch, numpy_wheel):
    name, sha256, data = numpy_wheel
    build.WHEEL_CACHE.mkdir(parents=True)
    (build.WHEEL_CACHE / name).write_bytes(b"truncated")
    fetched = []
    monkeypatch.setattr(build, "NUMPY_SOURCES", [
        ("local cache", build._from_cache),
        ("good", lambda n, s: fetched.append(n) or data),
    ])
    assert build.fetch_numpy_wheel().read_bytes() == data
    assert fetched == [name]


def test_hash_mismatch_everywhere_is_a_clear_error(sandbox, monkeypatch):
    monkeypatch.setattr(build, "NUMPY_SOURCES", [("only", lambda n, s: b"wrong bytes")])
    with pytest.raises(build.BuildError, match="hash mismatch"):
        build.fetch_numpy_wheel()


def test_missing_npm_is_a_clear_error(sandbox, monkeypatch, tmp_path):
    monkeypatch.setattr(build, "PYODIDE_DIR", tmp_path / "node_modules" / "pyodide")
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(build.BuildError, match="npm was not found"):
        build.ensure_node_modules()


def test_package_wheel_is_reproducible_and_holds_real_python_files():
    name, first = build.build_package_wheel()
    _, second = build.build_package_wheel()
    assert first == second, "the wheel changed with nothing changed: its hash would churn"
    assert name.startswith("mamba_wasm-") and name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(io.BytesIO(first)) as z:
        names = z.namelist()
        assert "mamba_wasm/__init__.py" in names
        for source in (ROOT / "mamba_wasm").glob("*.py"):
            assert z.read(f"mamba_wasm/{source.name}") == source.read_bytes()
        assert any(n.endswith(".dist-info/RECORD") for n in names)


def test_package_wheel_holds_unchecked_bytecode_for_pyodides_python():
    """Every module's .pyc, made by Pyodide's CPython 3.12 (magic 3531), hash-based and unchecked:
    the browser imports it whatever the unpacked files' modification times."""
    _, wheel = build.build_package_wheel()
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        for source in (ROOT / "mamba_wasm").glob("*.py"):
            pyc = z.read(f"mamba_wasm/__pycache__/{source.stem}.cpython-312.pyc")
            assert pyc[:4] == (3531).to_bytes(2, "little") + b"\r\n", source.name
            assert int.from_bytes(pyc[4:8], "little") == 0b01, source.name  # hash-based, not checked


def test_dist_manifest_lists_every_file_and_a_rebuild_changes_nothing(sandbox, monkeypatch,
                                                                     numpy_wheel):
    name, sha256, data = numpy_wheel
    monkeypatch.setattr(build, "NUMPY_SOURCES", [("given", lambda n, s: data)])
    manifest = build.build(quiet=True)
    files = {p.relative_to(build.DIST).as_posix() for p in build.DIST.rglob("*") if p.is_file()}
    assert files - {"manifest.json"} == set(manifest["files"])
    for rel, entry in manifest["files"].items():
        content = (build.DIST / rel).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], rel
        assert len(content) == entry["size"], rel
    for required in ("index.html", "worker.js", "pyodide/pyodide.asm.wasm", f"pyodide/{name}",
                     "models/index.json", manifest["package"]):
        assert required in manifest["files"]
    index = json.loads((build.DIST / "models" / "index.json").read_text())
    for model in index["models"]:
        for file in model["files"]:
            assert f"models/{model['path']}/{file}" in manifest["files"]
    snapshot = manifest["snapshot"]  # the site's Python snapshot names the files it was made from
    assert snapshot["file"] in manifest["files"]
    assert snapshot["made_from"] == {
        name: manifest["files"][rel]["sha256"] for name, rel in [
            ("asm", "pyodide/pyodide.asm.js"), ("wasm", "pyodide/pyodide.asm.wasm"),
            ("stdlib", "pyodide/python_stdlib.zip"), ("numpy", f"pyodide/{name}"), ("package", manifest["package"])]}

    mtimes = {p: p.stat().st_mtime_ns for p in build.DIST.rglob("*") if p.is_file()}
    assert build.build(quiet=True) == manifest
    assert mtimes == {p: p.stat().st_mtime_ns for p in build.DIST.rglob("*") if p.is_file()}

    stale = build.DIST / "models" / "gone" / "model.safetensors"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier build")
    build.build(quiet=True)
    assert not stale.parent.exists(), "files no longer planned must leave dist/"


def test_built_snapshot_is_an_entry_of_python_with_numpys_libraries_and_both_wheels():
    """The format web/snapshot-start.js reads: magic, header length, sha256 of the rest; a header
    naming NumPy's loaded libraries (with their bases) and the installed files of both wheels."""
    manifest = build.build(quiet=True)
    entry = gzip.decompress((build.DIST / manifest["snapshot"]["file"]).read_bytes())
    assert entry[:4] == b"MWS1"
    assert hashlib.sha256(entry[40:]).digest() == entry[8:40]
    header = json.loads(entry[40:40 + int.from_bytes(entry[4:8], "little")])
    assert any("_multiarray_umath" in lib["path"] for lib in header["libs"])
    assert all(lib["tableBase"] >= header["table"]["start"] for lib in header["libs"])
    paths = {f["path"] for f in header["files"]}
    assert f"{build.SITE_PACKAGES}/mamba_wasm/__init__.py" in paths
    assert f"{build.SITE_PACKAGES}/numpy/__init__.py" in paths


def test_server_sends_wasm_as_application_wasm(tmp_path, monkeypatch):
    (tmp_path / "a.wasm").write_bytes(b"\0asm")
    (tmp_path / "b.js").write_text("1")
    monkeypatch.setattr(build.StaticHandler, "quiet", True)
    server = build.make_server(tmp_path, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.urlopen(base + "a.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm"
        with urllib.request.urlopen(base + "b.js") as response:
            assert response.headers["Content-Type"] == "text/javascript"
    finally:
        server.shutdown()
        server.server_close()


def test_port_in_use_is_a_clear_error():
    first = build.make_server(ROOT, port=0)
    try:
        with pytest.raises(build.BuildError, match="--port"):
            build.make_server(ROOT, port=first.server_address[1])
    finally:
        first.server_close()
