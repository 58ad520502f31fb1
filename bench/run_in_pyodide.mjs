// Run a Python file in Pyodide under Node (the same V8 WebAssembly engine as Chromium), with
// the repository mounted at /repo. Used to compare NumPy formulations inside Pyodide itself.
//   node bench/run_in_pyodide.mjs bench/formulations.py [ARGS...]   (ARGS become sys.argv[1:])
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { loadPyodide } = await import(path.join(root, "node_modules/pyodide/pyodide.mjs"));
const wheels = path.join(root, ".cache/wheels");
const numpyWheel = fs.readdirSync(wheels).find((f) => f.startsWith("numpy-") && f.endsWith(".whl"));
if (!numpyWheel) throw new Error("no NumPy wheel in .cache/wheels: run `python3 build.py` first");

const pyodide = await loadPyodide({ indexURL: path.join(root, "node_modules/pyodide/") });
await pyodide.loadPackage(path.join(wheels, numpyWheel), { messageCallback: () => {} });
pyodide.FS.mkdirTree("/repo");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root }, "/repo");
pyodide.globals.set("argv", pyodide.toPy(process.argv.slice(2)));
pyodide.runPython("import sys; sys.path.insert(0, '/repo'); sys.argv = list(argv)");
await pyodide.runPythonAsync(fs.readFileSync(process.argv[2], "utf8"));
