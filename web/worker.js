// The web worker: Pyodide, NumPy, mamba_wasm and one model; text generated a step at a time.
//
// Messages in (from app.js), each with a `type` and an `id`:
//   load      {model: {name, base, files}}   start Python when needed, then load the model
//   generate  {prompt, params}               stream tokens until done, stopped, or an error
//   stop      {id of the generate request}   honoured before the next token
//   cancel    {id of the load request}       aborts its downloads; the model it had stays loaded
//   load      {model: {base}}                a model from a URL (config.json, model.safetensors or
//             {model: {local: [File]}}       the index and its shards, tokenizer.json) or from the
//                                            user's files: planned (sizes, memory check), then fetched
//                                            (from the Cache API when saved there) or read
//   continue  {more_tokens}                  resume the latest generation where it ended (after Stop)
//   saved-list   {}                          answered at once by `saved`
//   saved-delete {base}                      forget a saved model; answered by `saved`
// Messages out, each with the `id` of the request it answers:
//   progress  {text, loaded, total}          bytes of total while downloading (total 0: busy)
//   ready     {model: {name, n_params, state_nbytes, config}, elapsed_ms, timings: {phase: ms},
//              source: {kind: "site" | "url" | "files", base, download_bytes, saved, note}}
//   plan      {plan: {kind: "url" | "files", name, base, files: [{name, size}], download_bytes,
//              total_bytes, saved, n_params_estimate, float32_bytes}}   before a URL's or the user's
//              model is fetched: what it takes (download_bytes 0 when saved in this browser)
//   started   {n_prompt, prefill_ms, prompt_state_reused, state_nbytes, continued}
//   saved     {models: [{name, base, bytes, files, saved_at}], message?}   the saved models
//   token     {text, n_generated, tokens_per_second, wasm_heap_bytes}
//   done      {reason: "length" | "eos" | "stopped", text, n_generated, tokens_per_second, wasm_heap_bytes,
//              tokens_after_stop: tokens generated after Stop arrived (0: it lands between tokens),
//              python_objects: objects the Python GC tracks, to spot leaks (an undestroyed PyProxy
//              keeps its object alive)}
//   error     {message, during: "load" | "generate"}
//   cancelled {during: "load"}               a load ended by cancel; nothing changed
//   alive     (no id)                        sent once, when the worker holds the Web Lock named by
//                                            its Worker name: the page then waits on that lock and
//                                            so learns at once when the worker dies (see liveness)
//
// Every file comes through fetchVerified: checked against the sha256 in manifest.json and kept in
// the Cache API under that hash, so a repeat visit downloads nothing and a changed file is never
// served stale. A model from a URL or from the user's files is not in the manifest: model-store.js
// plans, fetches and saves it (under its URL). Python objects handed to JavaScript (PyProxies) are
// destroyed when done.
"use strict";

const CACHE_NAME = "mamba-wasm-v1";
const TOKEN_FLUSH_MS = 30;  // send text to the page at most this often (and at the end)

let manifest = null;  // manifest.json: {files: {path: {sha256, size}}, package, numpy, ...}
let pyodide = null;
let PythonError = null;  // pyodide.ffi.PythonError: how a Python exception arrives in JavaScript
let py = null;        // proxies of the Python functions used here, kept for the worker's life
let loaded = null;    // the current model: {name, model, tokenizer, session, begin, prefillStep, advance, extend} proxies
let generation = null;  // {id, stopRequested, stoppedAt: tokens generated when Stop arrived}

self.importScripts("model-store.js");  // models from a URL or the user's files: plan, fetch, save

// ---- files: Cache API keyed by sha256, downloads with progress ---------------------------------

async function openCache() {
  try {
    return self.caches ? await caches.open(CACHE_NAME) : null;
  } catch {
    return null;  // e.g. storage disabled: everything still works, just without a cache
  }
}

async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// A download of the current load request can be cancelled (the page's Cancel button): requests
// run one at a time, so one AbortController at a time is enough.
let loading = null;  // {id, controller} while a load request runs

function rethrowUnlessCancelled(error) {
  if (error && error.name === "AbortError") throw error;  // the user's Cancel, not a fault
}

async function download(url, label, expectedSize, onBytes) {
  const signal = loading ? loading.controller.signal : undefined;
  let response;
  try {
    response = await fetch(url, { cache: "no-cache", signal });
  } catch (e) {
    rethrowUnlessCancelled(e);
    throw new Error(`${label}: download failed (${e.message}). Check the connection, then Retry.`);
  }
  if (!response.ok) {
    throw new Error(`${label}: the server answered HTTP ${response.status}`
      + `${response.statusText ? ` (${response.statusText})` : ""}.`);
  }
  const declared = Number(response.headers.get("Content-Length")) || expectedSize || 0;
  let buffer = new Uint8Array(declared);
  let length = 0;
  const reader = response.body.getReader();
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {  // the connection dropped mid-file
      rethrowUnlessCancelled(e);
      throw new Error(`${label}: the connection broke after ${length.toLocaleString("en")} of `
        + `${declared ? declared.toLocaleString("en") : "?"} bytes (${e.message}). Retry to download it again.`);
    }
    const { done, value } = chunk;
    if (done) break;
    if (length + value.length > buffer.length) {  // no or wrong Content-Length: grow
      const bigger = new Uint8Array(Math.max(buffer.length * 2, length + value.length));
      bigger.set(buffer.subarray(0, length));
      buffer = bigger;
    }
    buffer.set(value, length);
    length += value.length;
    onBytes(value.length);
  }
  const promised = Number(response.headers.get("Content-Length"));
  if (promised && length < promised && !response.headers.get("Content-Encoding")) {
    throw new Error(`${label}: the download ended after ${length.toLocaleString("en")} of `
      + `${promised.toLocaleString("en")} bytes. Retry to download it again.`);
  }
  return length === buffer.length ? buffer : buffer.slice(0, length);
}

// Bytes of a file listed in manifest.json, verified; from the Cache API when it has that hash.
async function fetchVerified(path, onBytes) {
  const entry = manifest.files[path];
  const url = new URL(path, self.location.href).href;
  const key = `${url}?sha256=${entry.sha256}`;
  const cache = await openCache();
  if (cache) {
    const hit = await cache.match(key);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (await sha256Hex(bytes) === entry.sha256) {
        onBytes(bytes.length);
        return bytes;
      }
      await cache.delete(key);
    }
  }
  const bytes = await download(url, path, entry.size, onBytes);
  const actual = await sha256Hex(bytes);
  if (actual !== entry.sha256) {
    throw new Error(`${path}: the downloaded file does not match manifest.json `
      + `(sha256 ${actual.slice(0, 12)}…, expected ${entry.sha256.slice(0, 12)}…). `
      + "The site may have been rebuilt meanwhile: reload the page.");
  }
  if (cache) {
    try {
      for (const old of await cache.keys()) {  // earlier versions of this file
        if (old.url.startsWith(`${url}?sha256=`)) await cache.delete(old);
      }
      await cache.put(key, new Response(bytes));
    } catch (e) {
      console.warn(`not caching ${path}: ${e.message}`);  // quota: fine, it is in memory
    }
  }
  return bytes;
}

// Bytes of a file the manifest does not list (a model from elsewhere): not verified, not cached.
async function fetchUnlisted(url, onBytes) {
  return download(url, url, 0, onBytes);
}

function progressReporter(id, text, total) {
  let loaded = 0;
  let lastSent = 0;
  const report = (n) => {
    loaded += n;
    const now = performance.now();
    if (now - lastSent > 50 || loaded >= total) {
      lastSent = now;
      self.postMessage({ type: "progress", id, text, loaded, total });
    }
  };
  report.addTotal = (n) => { total += n; };
  return report;
}

function busy(id, text) {
  self.postMessage({ type: "progress", id, text, loaded: 0, total: 0 });
}

// ---- Python: Pyodide, NumPy and mamba_wasm, once per worker ------------------------------------

const RUNTIME_FILES = ["pyodide/pyodide.js", "pyodide/pyodide.asm.js", "pyodide/pyodide.asm.wasm",
  "pyodide/python_stdlib.zip", "pyodide/pyodide-lock.json"];

// Pyodide fetches its own files by URL. Answer those fetches from bytes already verified and
// cached above, so the runtime too is served by the Cache API (and counted in the progress bar).
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

function importBytes(bytes) {  // run a script we hold as verified bytes
  const url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
  try {
    self.importScripts(url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function startPython(id, report, lap) {
  const paths = [...RUNTIME_FILES, manifest.numpy, manifest.package];
  const bytes = new Map();
  await Promise.all(paths.map(async (path) => bytes.set(path, await fetchVerified(path, report))));
  lap("runtime_files_ms");

  busy(id, "Starting Python…");
  importBytes(bytes.get("pyodide/pyodide.js"));
  importBytes(bytes.get("pyodide/pyodide.asm.js"));  // defines _createPyodideModule: not fetched again
  const served = new Map();
  for (const path of ["pyodide/pyodide.asm.wasm", "pyodide/python_stdlib.zip",
    "pyodide/pyodide-lock.json", manifest.numpy]) {
    served.set(new URL(path, self.location.href).href, bytes.get(path));
  }
  const restoreFetch = serveFromMemory(served);
  let instance;  // becomes `pyodide` only once everything below worked: a failed start is redone
  try {
    instance = await self.loadPyodide({
      indexURL: new URL("pyodide/", self.location.href).href,
      stdout: (line) => console.log(line),
      stderr: (line) => console.warn(line),
    });
    PythonError = instance.ffi.PythonError;
    lap("python_ms");
    busy(id, "Loading NumPy…");
    await instance.loadPackage("numpy", { messageCallback: () => {}, checkIntegrity: false });
    lap("numpy_ms");
  } finally {
    restoreFetch();
  }
  busy(id, "Loading mamba_wasm…");
  instance.unpackArchive(bytes.get(manifest.package), "wheel");
  const mambaWasm = instance.pyimport("mamba_wasm");
  lap("package_ms");
  const tokenizerClass = mambaWasm.Tokenizer;
  py = {  // looked up once (each attribute read of a PyProxy makes a new proxy), kept for good
    mambaWasm,
    tokenizerClass,
    loadModelFromFiles: mambaWasm.load_model_from_files,
    tokenizerFromJson: tokenizerClass.from_json,
    Session: mambaWasm.Session,
    MambaWasmError: mambaWasm.MambaWasmError,
    builtins: instance.pyimport("builtins"),
    sys: instance.pyimport("sys"),
  };
  pyodide = instance;
}

// ---- requests ----------------------------------------------------------------------------------

async function load(msg) {
  const startedAt = performance.now();
  const timings = {};  // milliseconds of each phase, for the page and the benchmarks
  let lapStart = startedAt;
  const lap = (name) => {
    const now = performance.now();
    timings[name] = now - lapStart;
    lapStart = now;
  };
  if (manifest === null) {
    const response = await fetch("manifest.json", { cache: "no-cache" });
    if (!response.ok) throw new Error(`manifest.json: the server answered HTTP ${response.status}.`);
    manifest = await response.json();
  }
  // A model of this site (its files listed) comes verified through the manifest. One from a URL
  // or from the user's files is planned first (model-store.js): its size is known, and a model too
  // large for the tab refused, before any weight is fetched.
  const plan = msg.model.files ? null : await planModel(msg.model);
  if (plan) self.postMessage({ type: "plan", id: msg.id, plan: planSummary(plan) });
  const name = plan ? plan.name : msg.model.name;
  const files = plan ? plan.files.map((f) => f.name) : msg.model.files;
  const urls = plan ? [] : files.map((file) => new URL(file, msg.model.base).href);
  const listed = urls.map((url) => manifestPath(url));
  const modelBytes = plan ? plan.files.reduce((sum, f) => sum + f.size, 0)
    : listed.reduce((sum, path) => sum + (path ? manifest.files[path].size : 0), 0);
  let runtimeBytes = 0;
  if (py === null) {
    for (const path of [...RUNTIME_FILES, manifest.numpy, manifest.package]) {
      runtimeBytes += manifest.files[path].size;
    }
  }
  const report = progressReporter(msg.id,
    py === null ? "Downloading Python, NumPy and the model…" : modelProgressText(name, plan),
    runtimeBytes + modelBytes);
  const modelFiles = plan ? fetchPlannedFiles(plan, report)
    : Promise.all(urls.map((url, i) => (listed[i] ? fetchVerified(listed[i], report)
      : fetchUnlisted(url, report)))).then((contents) => ({
      files: new Map(files.map((file, i) => [file, contents[i]])), storage: null }));
  modelFiles.catch(() => {});  // awaited below; avoid an unhandled rejection meanwhile
  if (py === null) await startPython(msg.id, report, lap);
  const { files: byName, storage } = await modelFiles;
  lap("model_files_ms");

  if (loading) loading.controller.signal.throwIfAborted();  // Cancel came after the last byte
  busy(msg.id, `Reading ${name}…`);
  const tokenizerBytes = byName.get("tokenizer.json");
  if (tokenizerBytes === undefined) throw new Error(`${name}: the model lists no tokenizer.json.`);
  byName.delete("tokenizer.json");
  const pyFiles = toPythonFiles(byName);
  byName.clear();  // the bytes are in the WASM heap now: one copy of each file, not two
  let model = null;
  let tokenizer = null;
  try {
    model = py.loadModelFromFiles.callKwargs(pyFiles, { source: name });
    tokenizer = py.tokenizerFromJson.callKwargs(new TextDecoder().decode(tokenizerBytes),
      { source: `${name}/tokenizer.json` });
  } catch (e) {
    if (model) model.destroy();
    throw e;
  } finally {
    pyFiles.destroy();
  }
  if (loaded) release(loaded);
  // One Session per model: it keeps the state after the prompt, so the same prompt again
  // (Regenerate) skips the prefill.
  const session = py.Session(model, tokenizer);
  loaded = { name, model, tokenizer, session, begin: session.begin,
    prefillStep: session.prefill_step, advance: session.advance, extend: session.extend };
  const config = model.config;
  const configFields = {};
  for (const key of ["d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "d_inner",
    "dt_rank"]) {
    configFields[key] = config[key];
  }
  config.destroy();
  lap("model_ms");
  self.postMessage({
    type: "ready",
    id: msg.id,
    model: { name, n_params: model.n_params, state_nbytes: model.state_nbytes, config: configFields },
    source: plan ? { kind: plan.kind, base: plan.base, download_bytes: plan.download_bytes, ...storage }
      : { kind: "site" },
    elapsed_ms: performance.now() - startedAt,
    timings,
  });
}

// {file name: bytes} as a Python dict. Tensors become memoryviews: the one unavoidable copy, into
// the WASM heap, which NumPy then reads in place. JSON files are small: plain bytes for json.loads.
function toPythonFiles(byName) {
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

function release(proxies) {
  for (const key of ["extend", "advance", "prefillStep", "begin", "session", "tokenizer", "model"]) {
    proxies[key].destroy();
  }
}

function manifestPath(url) {  // "models/x/config.json" when url is a file of this site's manifest
  const root = new URL("./", self.location.href).href;
  if (!url.startsWith(root)) return null;
  const path = url.slice(root.length);
  return manifest.files[path] ? path : null;
}

// Size of the WebAssembly memory: it only grows, so this is also the peak so far.
function heapBytes() {
  return pyodide._module.HEAPU8.buffer.byteLength;
}

// Yield to the event loop (so a stop message can run) without setTimeout's 4 ms clamp.
const yieldChannel = new MessageChannel();
let resumeAfterYield = null;
yieldChannel.port1.onmessage = () => resumeAfterYield();
function yieldToEventLoop() {
  return new Promise((resolve) => {
    resumeAfterYield = resolve;
    yieldChannel.port2.postMessage(null);
  });
}

async function generate(msg) {
  if (loaded === null) throw new Error("No model is loaded yet.");
  generation = { id: msg.id, stopRequested: false, stoppedAt: null };
  const { session, begin, prefillStep } = loaded;
  try {
    const nPrompt = begin.callKwargs(msg.prompt, msg.params);
    // The prompt runs a block at a time with a yield between blocks, so Stop lands within one
    // block of a long prompt too (streamTokens then reports it stopped, with nothing generated).
    while (!prefillStep()) {
      await yieldToEventLoop();
      if (generation.stopRequested) break;
    }
    self.postMessage({ type: "started", id: msg.id, n_prompt: nPrompt,
      prefill_ms: session.prefill_seconds * 1000, prompt_state_reused: session.prompt_state_reused,
      state_nbytes: session.state_nbytes, continued: false });
    await streamTokens(msg.id, 0);
  } finally {
    generation = null;
  }
}

// Resume the latest generation (stopped, or ended by length) where it ended: the session keeps
// its state, sampler and detokenizer, so the text is what one uninterrupted generation gives.
async function continueGeneration(msg) {
  if (loaded === null) throw new Error("No model is loaded yet.");
  generation = { id: msg.id, stopRequested: false, stoppedAt: null };
  const { session, extend } = loaded;
  try {
    const before = session.n_generated;
    extend(msg.more_tokens);
    self.postMessage({ type: "started", id: msg.id, n_prompt: session.n_prompt, prefill_ms: 0,
      prompt_state_reused: true, state_nbytes: session.state_nbytes, continued: true });
    await streamTokens(msg.id, before);
  } finally {
    generation = null;
  }
}

// Advance one token at a time until done or Stop, sending text to the page; `before`: tokens the
// session had generated when this request began (tokens/s counts this request's only).
async function streamTokens(id, before) {
  const { session, advance } = loaded;
  const decodeStart = performance.now();
  let pending = "";
  let lastFlush = decodeStart;
  const rate = () => (session.n_generated - before)
    / Math.max(1e-3, (performance.now() - decodeStart) / 1000);
  while (!session.done && !generation.stopRequested) {
    pending += advance(1);
    const now = performance.now();
    if (now - lastFlush >= TOKEN_FLUSH_MS) {
      self.postMessage({ type: "token", id, text: pending,
        n_generated: session.n_generated, tokens_per_second: rate(), wasm_heap_bytes: heapBytes() });
      pending = "";
      lastFlush = now;
    }
    await yieldToEventLoop();
  }
  let reason = "eos";
  if (generation.stopRequested) reason = "stopped";
  else if (session.n_generated >= session.max_new_tokens) reason = "length";
  self.postMessage({ type: "done", id, reason, text: pending,
    n_generated: session.n_generated, tokens_per_second: rate(), wasm_heap_bytes: heapBytes(),
    tokens_after_stop: reason === "stopped" ? session.n_generated - generation.stoppedAt : null,
    python_objects: pyodide.runPython("import gc; gc.collect(1); len(gc.get_objects())") });
}

// A readable message: the package's own errors by their text, anything else with a short trace.
function describeError(error) {
  if (!(PythonError && error instanceof PythonError)) {
    return error && error.message ? error.message : String(error);
  }
  if (py) {
    const exc = py.sys.last_exc ?? py.sys.last_value;
    try {
      if (exc && py.builtins.isinstance(exc, py.MambaWasmError)) return py.builtins.str(exc);
    } finally {
      if (exc && exc.destroy) exc.destroy();
    }
  }
  const lines = error.message.trim().split("\n");
  return `Python error: ${lines.at(-1)}\n${lines.slice(-8, -1).join("\n")}`;
}

// ---- liveness: the page learns at once if this worker dies ---------------------------------------

// The page names the worker; the worker holds a Web Lock of that name for its whole life. A lock is
// released when its holder ends, however it ends (terminated, crashed, killed for memory), so the
// page, queued on the same lock, is told even while Python keeps this thread busy.
if (self.name && self.navigator && navigator.locks) {
  navigator.locks.request(self.name, () => {
    self.postMessage({ type: "alive" });
    return new Promise(() => {});  // never released while the worker lives
  });
}

// ---- dispatch: requests run one at a time, in order; stop and cancel are handled at once --------

// A load can be cancelled while it downloads; the model the worker had stays loaded.
async function cancellableLoad(msg) {
  loading = { id: msg.id, controller: new AbortController() };
  try {
    await load(msg);
  } finally {
    loading.controller.abort();  // downloads still running after another file failed: stop them
    loading = null;
  }
}

const requests = { load: cancellableLoad, generate, continue: continueGeneration };
let queue = Promise.resolve();

// The saved models (model-store.js): listed and deleted at once, not behind a running load.
async function answerSaved(msg) {
  try {
    if (msg.type === "saved-delete") await deleteSavedModel(msg.base);
    self.postMessage({ type: "saved", id: msg.id, models: await listSavedModels() });
  } catch (error) {
    self.postMessage({ type: "saved", id: msg.id, models: [], message: describeError(error) });
  }
}

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === "cancel") {
    if (loading && loading.id === msg.id) loading.controller.abort();
    return;
  }
  if (msg.type === "saved-list" || msg.type === "saved-delete") {
    answerSaved(msg);
    return;
  }
  if (msg.type === "stop") {
    if (generation && generation.id === msg.id && !generation.stopRequested) {
      generation.stopRequested = true;
      generation.stoppedAt = loaded.session.n_generated;
    }
    return;
  }
  const handler = requests[msg.type];
  if (!handler) {
    self.postMessage({ type: "error", id: msg.id, during: msg.type,
      message: `Unknown request type ${JSON.stringify(msg.type)}.` });
    return;
  }
  queue = queue.then(() => handler(msg)).catch((error) => {
    if (error && error.name === "AbortError") {
      self.postMessage({ type: "cancelled", id: msg.id, during: msg.type });
      return;
    }
    console.error(error);
    self.postMessage({ type: "error", id: msg.id, during: msg.type, message: describeError(error) });
  });
};
