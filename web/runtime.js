// Runtime start (worker side): Pyodide, NumPy and mamba_wasm from verified bytes, once per worker,
// and the few conversions between JavaScript and Python the other modules need. Python objects
// handed to JavaScript (PyProxies) are destroyed when done.

import { openCache } from "./downloads.js";
import { compileWasm, instantiateWith } from "./compiled-wasm.js";
import { KERNELS_FILE, installKernels, kernelsWanted } from "./kernels.js";
import { snapshotKey, startPython } from "./snapshot-start.js";

// The files every start of Python needs (all listed in manifest.json). The others are asked for by
// the start that needs them: the site's built snapshot (manifest.snapshot) when none is saved here,
// the wheels (manifest.numpy, manifest.package) on a normal start.
const PYODIDE_FILES = ["pyodide/pyodide.mjs", "pyodide/pyodide.asm.js", "pyodide/pyodide.asm.wasm",
  "pyodide/python_stdlib.zip", "pyodide/pyodide-lock.json"];

// What the worker imports before ready, and what a snapshot holds (scripts/make_snapshot.mjs too).
export const PACKAGE_IMPORTS = "import numpy, mamba_wasm, mamba_wasm.plan";

// startRuntime's fileOf: fetchFile(path) (a promise of the verified bytes) once per manifest path,
// at once for the files every start needs, on the start's first ask for the others.
export function runtimeFiles(fetchFile) {
  const files = new Map();
  const fileOf = (path) => {
    if (!files.has(path)) {
      const bytes = fetchFile(path);
      bytes.catch(() => {});  // reported by the start that awaits it
      files.set(path, bytes);
    }
    return files.get(path);
  };
  for (const path of [...PYODIDE_FILES, KERNELS_FILE]) fileOf(path);
  return fileOf;
}

// Pyodide fetches its own files by URL. Answer those fetches (files: URL -> promise of the bytes)
// from bytes verified and cached, so the runtime too is served by the Cache API (and counted in
// the progress bar).
function serveFromMemory(files) {
  const realFetch = self.fetch;
  self.fetch = (resource, options) => {
    const url = new URL(resource instanceof Request ? resource.url : resource, self.location.href);
    const bytes = files.get(url.href);
    if (bytes === undefined) return realFetch(resource, options);
    const type = url.pathname.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
    return bytes.then((b) => new Response(b, { headers: { "Content-Type": type } }));
  };
  return () => { self.fetch = realFetch; };
}

async function importBytes(bytes) {  // a module we hold as verified bytes
  const url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
  try {
    return await import(url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

// The files a memory snapshot depends on (with the wheels): another version of any means another heap.
const SNAPSHOT_INPUTS = { asm: "pyodide/pyodide.asm.js", wasm: "pyodide/pyodide.asm.wasm",
  stdlib: "pyodide/python_stdlib.zip" };

// Whether the site's snapshot was made from these files ({name: sha256}).
function madeFrom(snapshot, hashes) {
  return Boolean(snapshot) && Object.entries(hashes).every(([name, sha]) => snapshot.made_from[name] === sha);
}

// What a restored heap must answer before it is trusted: NumPy's libraries really called.
const SNAPSHOT_CHECK = `import numpy, mamba_wasm
float(numpy.ones(3, numpy.float32) @ numpy.ones(3, numpy.float32)) == 3.0`;

// Start Python from `fileOf(path)` (runtimeFiles: manifest path -> promise of its verified bytes):
// it begins as soon as Pyodide's loader is there, while the other files still download (their
// promises are awaited only where needed: the wheels not at all on a restore), and pyodide.asm.wasm
// is compiled the moment its bytes are verified, beside the rest (compiled-wasm.js). From the memory
// snapshot of an earlier visit when there is a good one for these files, else from the site's own
// (made at build time), else normally, making the snapshot for the next visit (snapshot-start.js).
// busy(phase, text) announces each phase as it begins; lap(name) records its milliseconds. Returns
// the runtime: {pyodide, PythonError, memory: Pyodide's WebAssembly.Memory (the SIMD kernels and
// the shard transports read NumPy's arrays in it), py: proxies of what the other modules call, kept for the
// worker's life, start: "snapshot" | "normal", startSource: "saved" | "built" (which snapshot) or "",
// startNote: why a snapshot was not used (each tried, or that none was saved; "" when the first was),
// projections: which code multiplies ("wasm-simd128" or "numpy"), projectionsNote: why not the
// kernels ("" when they run)}. suspends: this worker will wait on other workers' messages with
// run_sync (port-transport.js), so Python starts normally, without any snapshot: a restored heap
// keeps the JSPI support of the Python that made it, and the site's was made under Node, without
// it (as is a saved copy of it).
export async function startRuntime(manifest, fileOf, busy, lap, { suspends = false } = {}) {
  const wasm = compileWasm(fileOf("pyodide/pyodide.asm.wasm"));
  const hashes = {};
  for (const [name, path] of Object.entries({ ...SNAPSHOT_INPUTS, numpy: manifest.numpy, package: manifest.package })) {
    hashes[name] = manifest.files[path].sha256;
  }
  const cache = suspends ? null : await openCache();
  const key = snapshotKey(self.location.href, hashes);
  // The site's snapshot (build.py: made from the files of `made_from`) downloads beside the runtime
  // when none is saved here (a first visit).
  const built = !suspends && madeFrom(manifest.snapshot, hashes) ? () => fileOf(manifest.snapshot.file) : null;
  if (built && !(cache && await cache.match(key).catch(() => null))) built();
  const { loadPyodide } = await importBytes(await fileOf("pyodide/pyodide.mjs"));
  await importBytes(await fileOf("pyodide/pyodide.asm.js"));  // defines _createPyodideModule: not fetched again
  busy("python", "Starting Python…");
  lap("runtime_js_ms");
  let memory = null;
  const restoreCreate = instantiateWith(wasm, (m) => { memory = m; });
  const served = new Map();
  for (const path of ["pyodide/python_stdlib.zip", "pyodide/pyodide-lock.json"]) {
    served.set(new URL(path, self.location.href).href, fileOf(path));
  }
  // Pyodide still fetches the wasm as it starts, but never reads that answer: it is instantiated
  // from `wasm` (instantiateWith).
  served.set(new URL("pyodide/pyodide.asm.wasm", self.location.href).href, Promise.resolve(new Uint8Array(0)));
  const restoreFetch = serveFromMemory(served);
  let started;
  try {
    started = await startPython({
      loadPyodide,
      options: {
        indexURL: new URL("pyodide/", self.location.href).href,
        stdout: (line) => console.log(line),
        stderr: (line) => console.warn(line),
      },
      cache,
      key,
      builtEntry: built,
      wheels: () => Promise.all([fileOf(manifest.numpy), fileOf(manifest.package)]),
      imports: PACKAGE_IMPORTS,
      check: SNAPSHOT_CHECK,
      lap,
    });
  } finally {
    restoreFetch();
    restoreCreate();
  }
  started.saving.then(({ note }) => { if (note && !suspends) console.warn(note); });
  const { pyodide } = started;
  const kernels = await installKernels(pyodide, memory, fileOf(KERNELS_FILE), kernelsWanted(self.location));
  const mambaWasm = pyodide.pyimport("mamba_wasm");
  const plan = pyodide.pyimport("mamba_wasm.plan");
  const tokenizerClass = mambaWasm.Tokenizer;
  const py = {  // looked up once (each attribute read of a PyProxy makes a new proxy), kept for good
    mambaWasm,
    plan,
    describeConfig: plan.describe_config,
    describe: plan.describe,
    tokenizerClass,
    compileTokenizerPatterns: pyodide.pyimport("mamba_wasm.tokenizer").compile_patterns,
    loadModelFromFiles: mambaWasm.load_model_from_files,
    tokenizerFromJson: tokenizerClass.from_json,
    Session: mambaWasm.Session,
    MambaWasmError: mambaWasm.MambaWasmError,
    builtins: pyodide.pyimport("builtins"),
    sys: pyodide.pyimport("sys"),
  };
  return { pyodide, PythonError: pyodide.ffi.PythonError, memory, py, start: started.start, startSource: started.source,
    startNote: suspends ? "no snapshot: this worker waits on other workers' messages (JSPI)" : started.note,
    projections: kernels.backend, projectionsNote: kernels.note };
}

// {file name: bytes} as a Python dict. Tensors become memoryviews: the one unavoidable copy, into
// the WASM heap, which NumPy then reads in place. JSON files are small: plain bytes for json.loads.
export function toPythonFiles(runtime, byName) {
  const { pyodide, py } = runtime;
  const dict = py.builtins.dict();
  for (const [name, bytes] of byName) {
    const view = pyodide.toPy(bytes);
    if (name.endsWith(".json")) {
      const copy = py.builtins.bytes(view);
      dict.set(name, copy);
      copy.destroy();
    } else {
      dict.set(name, view);
    }
    view.destroy();
  }
  return dict;
}

// plan.describe_config(config.json) as a plain object.
export function describeConfig(runtime, configBytes, source) {
  const text = new TextDecoder().decode(configBytes);
  const proxy = runtime.py.describeConfig.callKwargs(text, { source });
  try {
    return proxy.toJs({ dict_converter: Object.fromEntries });
  } finally {
    proxy.destroy();
  }
}

// Size of the WebAssembly memory: it only grows, so this is also the peak so far.
export function heapBytes(runtime) {
  return runtime.pyodide._module.HEAPU8.buffer.byteLength;
}

// Objects the Python GC tracks, after a collection: a count that grows run after run is a leak.
export function pythonObjects(runtime) {
  return runtime.pyodide.runPython("import gc; gc.collect(1); len(gc.get_objects())");
}

// A readable message: the package's own errors by their text, anything else with a short trace.
export function describeError(runtime, error) {
  if (!(runtime && error instanceof runtime.PythonError)) {
    return error && error.message ? error.message : String(error);
  }
  const { py } = runtime;
  const exc = py.sys.last_exc ?? py.sys.last_value;
  try {
    if (exc && py.builtins.isinstance(exc, py.MambaWasmError)) return py.builtins.str(exc);
  } finally {
    if (exc && exc.destroy) exc.destroy();
  }
  const lines = error.message.trim().split("\n");
  return `Python error: ${lines.at(-1)}\n${lines.slice(-8, -1).join("\n")}`;
}
