// Run a Python file in Pyodide under Node (the same V8 WebAssembly engine as Chromium), with
// the repository mounted at /repo. Used to compare NumPy formulations inside Pyodide itself.
//   node bench/run_in_pyodide.mjs [--kernels FILE.wasm] bench/formulations.py [ARGS...]
// (ARGS become sys.argv[1:]). With --kernels, the SIMD kernels (dist/kernels/matmul.wasm) are
// installed as the page's worker installs them (web/kernels.js): the projections run on them.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const kernelsFile = args[0] === "--kernels" ? args.splice(0, 2)[1] : null;

// Pyodide's Emscripten makes its memory in JavaScript and imports it: seen here, as the page sees it
// through compiled-wasm.js.
let memory = null;
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = function (source, imports) {
  if (imports && imports.env && imports.env.memory instanceof WebAssembly.Memory) memory = imports.env.memory;
  return instantiate.apply(this, arguments);
};
const { loadPyodide } = await import(path.join(root, "node_modules/pyodide/pyodide.mjs"));
const wheels = path.join(root, ".cache/wheels");
const numpyWheel = fs.readdirSync(wheels).find((f) => f.startsWith("numpy-") && f.endsWith(".whl"));
if (!numpyWheel) throw new Error("no NumPy wheel in .cache/wheels: run `python3 build.py` first");

const pyodide = await loadPyodide({ indexURL: path.join(root, "node_modules/pyodide/") });
await pyodide.loadPackage(path.join(wheels, numpyWheel), { messageCallback: () => {} });
pyodide.FS.mkdirTree("/repo");
pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root }, "/repo");
pyodide.globals.set("argv", pyodide.toPy(args));
pyodide.runPython("import sys; sys.path.insert(0, '/repo'); sys.argv = list(argv)");
if (kernelsFile) {
  const { installKernels } = await import(path.join(root, "web/kernels.js"));
  const { backend, note } = await installKernels(pyodide, memory, fs.promises.readFile(kernelsFile));
  if (note) throw new Error(note);
  console.error(`projections: ${backend}`);
}
await pyodide.runPythonAsync(fs.readFileSync(args[0], "utf8"));
