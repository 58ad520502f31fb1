// Compile the package's modules to CPython bytecode with Pyodide's own Python (3.12, the browser's),
// under Node: build.py ships the .pyc files in the package wheel, so that a first visit's import does
// not compile the sources in the browser.
//   node scripts/compile_bytecode.mjs PYODIDE_DIR PACKAGE_DIR SITE_PACKAGES
// PACKAGE_DIR (a copy of mamba_wasm/) gets __pycache__/*.cpython-312.pyc, unchecked-hash: valid
// whatever the files' modification times once unpacked. SITE_PACKAGES is where the browser installs
// the package (the file names the bytecode records for tracebacks).
import path from "node:path";

const [pyodideDir, packageDir, sitePackages] = process.argv.slice(2);
const { loadPyodide } = await import(path.join(path.resolve(pyodideDir), "pyodide.mjs"));
const pyodide = await loadPyodide({ indexURL: path.resolve(pyodideDir) + "/" });
pyodide.FS.mkdirTree("/package");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: path.resolve(packageDir) }, "/package");
pyodide.globals.set("destination", `${sitePackages}/${path.basename(path.resolve(packageDir))}`);
pyodide.runPython(`
import compileall, py_compile, sys
ok = compileall.compile_dir("/package", ddir=destination, quiet=1,
                            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
if not ok:
    sys.exit("compiling the package failed")
`);
