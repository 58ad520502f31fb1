// A load request (worker side), as one sequence of phases, each announced once:
//   download  the runtime files (when Python has not started) and a site model's files, verified
//   python    Python, NumPy and the package start (runtime.js: from the snapshot or not), once per worker,
//             as soon as Pyodide's own files are there: the rest of the download goes on meanwhile
//   plan      a URL's or the user's model: config.json described by Python, sizes, memory check
//   fetch     that model's files: downloaded, read from this browser's storage or the user's files
//   model     the files become a Python model and tokenizer
// A site model comes verified through manifest.json; a model from elsewhere through model-store.js.

import { download, fetchManifest, fetchVerified, manifestPath, progressCounter } from "./downloads.js";
import { LoadedModel } from "./generation.js";
import {
  fetchPlannedFiles, forgetSaved, listSaved, planModel, planProgressText, planSummary, weightBudget,
} from "./model-store.js";
import facts from "./facts.js";
import { ShardedLoadedModel, readShardedModel, splittable } from "./shard-leader.js";
import { describeGgufPrefix, isGgufName, readGgufModel } from "./gguf-source.js";
import { describeConfig, describeError, runtimeFiles, startRuntime, toPythonFiles } from "./runtime.js";

// What the worker holds between requests: the manifest, the runtime once Python started, the model.
export class WorkerState {
  constructor() {
    this.manifest = null;
    this.runtime = null;
    this.loaded = null;  // a LoadedModel
  }
}

// Load msg.model into `state` (replacing the model it had only once the new one loaded).
// send(type, fields) posts to the page; signal aborts the downloads (the page's Cancel).
export async function load(state, msg, send, signal) {
  const startedAt = performance.now();
  const timings = {};  // milliseconds of each phase, for the page and the benchmarks
  let lapStart = startedAt;
  const lap = (name) => {
    const now = performance.now();
    timings[name] = now - lapStart;
    lapStart = now;
  };
  const spans = {};  // [start, end] of phases that may overlap, in ms from the request's start
  const span = (name, from) => { spans[name] = [from - startedAt, performance.now() - startedAt]; };
  timings.spans = spans;
  // The phase that runs, announced once as it begins; a download's bytes go on under it.
  let current = { phase: "", text: "" };
  const began = {};  // phase -> when it was announced
  const busy = (phase, text) => {
    current = { phase, text };
    began[phase] = performance.now();
    send("progress", { id: msg.id, phase, text, loaded: 0, total: 0 });
  };
  const counter = (phase, text, total) => {
    current = { phase, text };
    return progressCounter((loaded, sum) => send("progress", { id: msg.id, ...current, loaded, total: sum }), total);
  };

  if (state.manifest === null) state.manifest = await fetchManifest();
  const { manifest } = state;
  const siteModel = Boolean(msg.model.files);
  const siteUrls = siteModel ? msg.model.files.map((file) => new URL(file, msg.model.base).href) : [];

  // download: the runtime (first load only) and a site model's files, under one byte count. A
  // site model's file the manifest does not list (an edited models/index.json) is fetched unverified.
  // Python starts as soon as its own files are there, while the rest still downloads: the byte count
  // then goes on under the phase that runs (progress below). The runtime's files the start asks for
  // later (runtimeFiles) join the count then.
  const startsPython = state.runtime === null;
  const listed = siteUrls.map((url) => manifestPath(manifest, url));
  const runtimeBytes = [];  // promises of the runtime's files asked for so far
  const siteBytes = new Map();
  let downloads = Promise.resolve();
  let fileOf = null;
  if (startsPython || siteModel) {
    const total = listed.reduce((sum, path) => sum + (path ? manifest.files[path].size : 0), 0);
    const text = startsPython
      ? `Downloading Python, NumPy${siteModel ? " and the model" : ""}…`
      : `Downloading ${msg.model.name}…`;
    const count = counter("download", text, total);
    if (startsPython) {
      fileOf = runtimeFiles((path) => {
        count.addTotal(manifest.files[path].size);
        const bytes = fetchVerified(manifest, path, count, signal);
        runtimeBytes.push(bytes);
        return bytes;
      });
    }
    count(0);
    downloads = Promise.all([
      ...runtimeBytes,
      ...siteUrls.map(async (url, i) => siteBytes.set(msg.model.files[i], listed[i]
        ? await fetchVerified(manifest, listed[i], count, signal)
        : await download(url, url, 0, count, signal))),
    ]).then(() => span("download", startedAt));
    // A failure is reported below, once Python's start (which may be using the other files) ended.
    downloads.catch(() => {});
  }
  if (startsPython) {
    try {
      // Split across workers without shared memory, it waits on their messages (port-transport.js).
      const suspends = msg.workers > 1 && !self.crossOriginIsolated;
      state.runtime = await startRuntime(manifest, fileOf, busy, lap, { suspends });
    } catch (error) {
      await downloads;  // a failed download is the cause to report, not what it did to the start
      throw error;
    }
    span("python", began.python);
    timings.start = state.runtime.start;  // which start Python took: "snapshot" or "normal"
    if (state.runtime.startSource) timings.snapshot = state.runtime.startSource;  // "saved" or "built"
    if (state.runtime.startNote) timings.start_note = state.runtime.startNote;
  }
  await downloads;
  // After Python's start: what was left of the download (nothing when the start took longer).
  if (startsPython || siteModel) lap(startsPython ? "download_rest_ms" : "download_ms");
  const { runtime } = state;
  timings.projections = runtime.projections;  // which code multiplies: "wasm-simd128" (the SIMD kernels) or "numpy"
  if (runtime.projectionsNote) timings.projections_note = runtime.projectionsNote;

  let name = msg.model.name;
  let plan = null;
  let byName;
  let storage = null;
  if (siteModel) {
    byName = siteBytes;
  } else {
    busy("plan", `Reading ${name}'s ${isGgufName(name) ? "header" : "config.json"}…`);
    plan = await planModel(msg.model, (configBytes, source) => describeConfig(runtime, configBytes, source),
      signal, weightBudget(msg.workers ?? 1, msg.worker_weight_limit),
      (prefix, size, source) => describeGgufPrefix(runtime, prefix, size, source));
    name = plan.name;
    lap("plan_ms");
    send("plan", { id: msg.id, plan: planSummary(plan) });
    const count = counter("fetch", planProgressText(plan), plan.files.reduce((s, f) => s + f.size, 0));
    count(0);
    ({ files: byName, storage } = await fetchPlannedFiles(plan, count, signal));
    lap("fetch_ms");
  }

  signal.throwIfAborted();  // Cancel came after the last byte
  busy("model", `Reading ${name}…`);
  let model;
  try {
    model = await readModel(runtime, name, byName, msg);
  } catch (error) {
    if (plan && await forgetSaved(plan)) {
      throw new Error(`${describeError(runtime, error)} (It was saved in this browser by an earlier `
        + "visit: it has been removed.)");
    }
    throw error;
  }
  if (plan && plan.kind === "url" && !plan.saved && storage.saved) await listSaved(plan);
  if (state.loaded) state.loaded.release();
  state.loaded = model;
  lap("model_ms");
  send("ready", {
    id: msg.id,
    model: { name, ...describeLoaded(runtime, model) },
    source: plan ? { kind: plan.kind, base: plan.base, download_bytes: plan.download_bytes, ...storage }
      : { kind: "site" },
    elapsed_ms: performance.now() - startedAt,
    timings,
  });
  // The tokenizer's regexes are compiled after ready, not at import: while the user reads the page,
  // before the first prompt is encoded (tokenizer.py, _LazyPattern).
  if (startsPython) runtime.py.compileTokenizerPatterns();
}

// byName (file name -> bytes, emptied here: the bytes move into the WASM heap, one copy, not
// two) as a LoadedModel; split across msg.workers workers when that is above 1 (shard-leader.js).
async function readModel(runtime, name, byName, msg) {
  const { py } = runtime;
  const gguf = [...byName.keys()].find(isGgufName);
  if (gguf) return readGgufModel(runtime, name, gguf, byName);
  const tokenizerBytes = byName.get(facts.files.tokenizer);
  if (tokenizerBytes === undefined) throw new Error(`${name}: the model lists no ${facts.files.tokenizer}.`);
  byName.delete(facts.files.tokenizer);
  const sharded = msg.workers > 1 && splittable(byName);
  const pyFiles = sharded ? null : toPythonFiles(runtime, byName);
  if (!sharded) byName.clear();
  let model = null;
  let tokenizer = null;
  try {
    model = sharded ? await readShardedModel(runtime, name, byName, msg.workers, msg.id)
      : py.loadModelFromFiles.callKwargs(pyFiles, { source: name });
    tokenizer = py.tokenizerFromJson.callKwargs(new TextDecoder().decode(tokenizerBytes),
      { source: `${name}/${facts.files.tokenizer}` });
  } catch (e) {
    if (model && sharded) model.release();  // the followers drop their shards too
    if (model) model.destroy();
    throw e;
  } finally {
    if (pyFiles) pyFiles.destroy();
  }
  const session = py.Session(model, tokenizer);
  return sharded ? new ShardedLoadedModel(name, model, tokenizer, session, !self.crossOriginIsolated)
    : new LoadedModel(name, model, tokenizer, session);
}

// plan.describe of the loaded model's config, and the config itself ({field: value}).
function describeLoaded(runtime, loaded) {
  const config = loaded.model.config;
  const description = runtime.py.describe(config);
  const configDict = config.to_dict();
  try {
    return { ...description.toJs({ dict_converter: Object.fromEntries }),
      config: configDict.toJs({ dict_converter: Object.fromEntries }) };
  } finally {
    for (const proxy of [configDict, description, config]) proxy.destroy();
  }
}
