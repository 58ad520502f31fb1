// Runtime start (worker side): Pyodide, NumPy and mamba_wasm from verified bytes, once per worker,
// and the few conversions between JavaScript and Python the other modules need. Python objects
// handed to JavaScript (PyProxies) are destroyed when done.

// The files Python needs besides the package and NumPy's wheel (all listed in manifest.json).
const PYODIDE_FILES = ["pyodide/pyodide.mjs", "pyodide/pyodide.asm.js", "pyodide/pyodide.asm.wasm",
  "pyodide/python_stdlib.zip", "pyodide/pyodide-lock.json"];

// Every manifest path the runtime is made of.
export function runtimePaths(manifest) {
  return [...PYODIDE_FILES, manifest.numpy, manifest.package];
}

// Pyodide fetches its own files by URL. Answer those fetches from bytes already verified and
// cached, so the runtime too is served by the Cache API (and counted in the progress bar).
function serveFromMemory(files) {
  const realFetch = self.fetch;
  self.fetch = (resource, options) => {
    const url = new URL(resource instanceof Request ? resource.url : resource, self.location.href);
    const bytes = files.get(url.href);
    if (bytes === undefined) return realFetch(resource, options);
    const type = url.pathname.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
    return Promise.resolve(new Response(bytes, { headers: { "Content-Type": type } }));
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

// Start Python from `bytes` (manifest path -> verified bytes of runtimePaths). busy(phase, text)
// announces each phase as it begins; lap(name) records its milliseconds. Returns the runtime:
// {pyodide, PythonError, py: proxies of what the other modules call, kept for the worker's life}.
export async function startRuntime(manifest, bytes, busy, lap) {
  busy("python", "Starting Python…");
  const { loadPyodide } = await importBytes(bytes.get("pyodide/pyodide.mjs"));
  await importBytes(bytes.get("pyodide/pyodide.asm.js"));  // defines _createPyodideModule: not fetched again
  const served = new Map();
  for (const path of ["pyodide/pyodide.asm.wasm", "pyodide/python_stdlib.zip",
    "pyodide/pyodide-lock.json", manifest.numpy]) {
    served.set(new URL(path, self.location.href).href, bytes.get(path));
  }
  const restoreFetch = serveFromMemory(served);
  let pyodide;
  try {
    pyodide = await loadPyodide({
      indexURL: new URL("pyodide/", self.location.href).href,
      stdout: (line) => console.log(line),
      stderr: (line) => console.warn(line),
    });
    lap("python_ms");
    busy("numpy", "Loading NumPy…");
    await pyodide.loadPackage("numpy", { messageCallback: () => {}, checkIntegrity: false });
    lap("numpy_ms");
  } finally {
    restoreFetch();
  }
  busy("package", "Loading mamba_wasm…");
  pyodide.unpackArchive(bytes.get(manifest.package), "wheel");
  const mambaWasm = pyodide.pyimport("mamba_wasm");
  const plan = pyodide.pyimport("mamba_wasm.plan");
  lap("package_ms");
  const tokenizerClass = mambaWasm.Tokenizer;
  const py = {  // looked up once (each attribute read of a PyProxy makes a new proxy), kept for good
    mambaWasm,
    plan,
    describeConfig: plan.describe_config,
    describe: plan.describe,
    tokenizerClass,
    loadModelFromFiles: mambaWasm.load_model_from_files,
    tokenizerFromJson: tokenizerClass.from_json,
    Session: mambaWasm.Session,
    MambaWasmError: mambaWasm.MambaWasmError,
    builtins: pyodide.pyimport("builtins"),
    sys: pyodide.pyimport("sys"),
  };
  return { pyodide, PythonError: pyodide.ffi.PythonError, py };
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
