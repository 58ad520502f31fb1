// The site's own memory snapshot, made at build time: Pyodide's Python under Node starts normally from
// dist/'s runtime files and wheels, imports what the worker imports, and web/snapshot-start.js makes
// the entry exactly as a visit does; it is written gzipped. A first visit then restores it instead of
// starting Python and importing NumPy (build.py; docs/BENCHMARKS.md, start-up).
//   node scripts/make_snapshot.mjs PYODIDE_DIR NUMPY_WHEEL PACKAGE_WHEEL OUT
// PYODIDE_DIR: Pyodide's files (as dist/pyodide/ has them); OUT: the .gz file to write.
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

import { PACKAGE_IMPORTS } from "../web/runtime.js";
import { startPython } from "../web/snapshot-start.js";

const [pyodideDir, numpyWheel, packageWheel, out] = process.argv.slice(2).map((p) => path.resolve(p));
const bytesOf = (file) => new Uint8Array(fs.readFileSync(file));
const { loadPyodide } = await import(path.join(pyodideDir, "pyodide.mjs"));

// A browser's Pyodide puts one function in the table as it starts (a helper that needs WebAssembly GC,
// which this Node lacks); NumPy's libraries come after it. The same slot is left empty here, so that
// the libraries get the table bases they get in a browser (snapshot-start.js refuses any other
// layout, and points the restored heap at that browser's helper).
async function startLikeABrowser(options) {
  const pyodide = await loadPyodide(options);
  if (pyodide._module._PyEM_CountArgsPtr === 0) pyodide._module.wasmTable.grow(1);
  return pyodide;
}

// The one entry startPython stores, kept in memory.
const stored = new Map();
const cache = {
  match: async (key) => (stored.has(key) ? new Response(stored.get(key)) : undefined),
  put: async (key, response) => { stored.set(key, new Uint8Array(await response.arrayBuffer())); },
  keys: async () => [],
  delete: async (key) => stored.delete(key),
};
const started = await startPython({
  loadPyodide: startLikeABrowser,
  options: { indexURL: pyodideDir + "/" },
  cache,
  key: "built",
  wheels: async () => [bytesOf(numpyWheel), bytesOf(packageWheel)],
  imports: PACKAGE_IMPORTS,
  check: "True",
  lap: () => {},
});
const { saved, note } = await started.saving;
if (!saved) throw new Error(`no snapshot made: ${note}`);
fs.writeFileSync(out, zlib.gzipSync(stored.get("built"), { level: 9 }));
