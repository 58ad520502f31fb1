// Models from elsewhere, for worker.js (loaded with importScripts): a base URL (a Hugging Face
// repository's resolve/main/ URL, or any static folder) or files the user picked on this device.
//
//   planModel(source)          what to fetch and how big it is, BEFORE any weight is downloaded:
//                              file sizes (HEAD requests, or File.size), an estimate of the float32
//                              weights from config.json, and the refusal of a model too large for a tab
//   fetchPlannedFiles(plan, report)   the bytes, from the Cache API when saved there, else downloaded
//                              (then saved, or kept in memory when the storage quota is short)
//   listSavedModels(), deleteSavedModel(base)   what the page lists, with a delete button
//
// A saved model is used as is, without asking the server again: after one visit it works offline.
// Local files are read in the worker and never saved or sent anywhere (the user has them).
// Uses worker.js's download(url, label, expectedSize, onBytes).
"use strict";

const MODEL_CACHE_NAME = "mamba-wasm-models-v1";  // one entry per file URL, plus the registry
// The registry of saved models {base: {name, base, files: [{name, size}], bytes, saved_at}}, kept in
// the same cache under a URL of this site that is never fetched.
const REGISTRY_URL = new URL("saved-models/registry.json", self.location.href).href;

const CONFIG_FILE = "config.json";
const SINGLE_FILE = "model.safetensors";
const INDEX_FILE = "model.safetensors.index.json";
const TOKENIZER_FILE = "tokenizer.json";

// wasm32 gives a tab at most 4 GB of WebAssembly memory (Pyodide 0.27 grows to that). The weights are
// held as float32 (F16/BF16 tensors are upcast one at a time, next to the file bytes, which are dropped
// after loading), so the peak is the file bytes plus the float32 weights: at most 3 GB under this
// limit (a 16-bit file is half its float32 size), leaving room for Python, NumPy and the state.
// mamba-370m (1.5 GB) fits; mamba-790m (3.2 GB) does not.
const MAX_FLOAT32_WEIGHT_BYTES = 2e9;

// ---- planning: names, sizes and the memory check ----------------------------------------------

// "https://huggingface.co/owner/repo" (a repository page) -> ".../resolve/main/"; a URL of a file
// in the folder (".../config.json") -> the folder; always with a trailing slash.
function normalizeBase(text) {
  const url = new URL(text.trim(), self.location.href);
  const hub = url.hostname === "huggingface.co"
    && url.pathname.match(/^\/([^/]+\/[^/]+?)(?:\/(?:tree|blob)\/([^/]+))?\/?$/);
  if (hub) return `${url.origin}/${hub[1]}/resolve/${hub[2] || "main"}/`;
  url.search = "";
  url.hash = "";
  if (/\.(json|safetensors)$/.test(url.pathname)) url.pathname = url.pathname.replace(/[^/]*$/, "");
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url.href;
}

function nameOfBase(base) {
  const url = new URL(base);
  const hub = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\//);
  if (hub) return hub[1];
  const parts = url.pathname.split("/").filter(Boolean);
  return parts.length ? parts[parts.length - 1] : url.host;
}

// Parameters implied by config.json, in either layout mamba_wasm reads (mamba_wasm/config.py has
// the real mapping; this only sizes the download and memory before Python has started). null when
// the file does not say enough.
function estimateParams(c) {
  const ssm = c.ssm_cfg || {};
  const d = c.hidden_size ?? c.d_model;
  const nLayer = c.num_hidden_layers ?? c.n_layer;
  let v = c.vocab_size;
  if (c.hidden_size === undefined && c.pad_vocab_size_multiple) {
    v = Math.ceil(v / c.pad_vocab_size_multiple) * c.pad_vocab_size_multiple;
  }
  if (![d, nLayer, v].every((x) => Number.isInteger(x) && x > 0)) return null;
  const n = c.state_size ?? ssm.d_state ?? 16;
  const k = c.conv_kernel ?? ssm.d_conv ?? 4;
  const dIn = c.intermediate_size ?? (c.expand ?? ssm.expand ?? 2) * d;
  let r = c.time_step_rank ?? ssm.dt_rank ?? "auto";
  if (r === "auto") r = Math.ceil(d / 16);
  const projBias = c.use_bias ?? ssm.bias ?? false;
  const convBias = c.use_conv_bias ?? ssm.conv_bias ?? true;
  const tied = c.tie_word_embeddings ?? c.tie_embeddings ?? true;
  const perLayer = d + 2 * dIn * d + dIn * k + (r + 2 * n) * dIn + dIn * r + dIn + dIn * n + dIn
    + d * dIn + (projBias ? 2 * dIn + d : 0) + (convBias ? dIn : 0);
  return v * d + nLayer * perLayer + d + (tied ? 0 : v * d);
}

const gigabytes = (n) => (n / 1e9).toFixed(1);

// The current load's abort signal (worker.js: Cancel), so planning requests stop with it too.
const loadSignal = () => (typeof loading !== "undefined" && loading ? loading.controller.signal : undefined);

// Refuse, before downloading, a model whose float32 weights would not fit in the tab.
function checkFitsInTab(name, nParams, weightFileBytes) {
  // Without a usable config.json, assume 16-bit files: float32 is twice the file.
  const float32Bytes = nParams !== null ? 4 * nParams : 2 * weightFileBytes;
  if (float32Bytes > MAX_FLOAT32_WEIGHT_BYTES) {
    const params = nParams !== null ? ` (${(nParams / 1e6).toFixed(0)}M parameters)` : "";
    throw new Error(`${name} is too large for a browser tab: its weights take ${gigabytes(float32Bytes)} GB `
      + `as float32${params}, and this page holds at most ${gigabytes(MAX_FLOAT32_WEIGHT_BYTES)} GB of `
      + "weights (a tab's WebAssembly memory is 4 GB at most, and loading needs room for the file "
      + "too). Nothing was downloaded. Pick a smaller model, such as mamba-130m-hf or mamba-370m-hf.");
  }
  return float32Bytes;
}

async function headSize(url) {
  let response;
  try {
    response = await fetch(url, { method: "HEAD", cache: "no-cache", signal: loadSignal() });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Error(`${url}: cannot reach it (${e.message}). The server must allow cross-origin `
      + "requests (CORS) for the page to read it.");
  }
  if (!response.ok) return { ok: false, status: response.status, size: 0 };
  return { ok: true, status: response.status, size: Number(response.headers.get("Content-Length")) || 0 };
}

async function fetchSmall(url, what) {
  let response;
  try {
    response = await fetch(url, { cache: "no-cache", signal: loadSignal() });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Error(`${url}: cannot reach it (${e.message}). Check the URL; the server must allow `
      + "cross-origin requests (CORS).");
  }
  if (!response.ok) {
    throw new Error(`${url}: the server answered HTTP ${response.status}; is this a folder with ${what}?`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

function parseJson(bytes, label) {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${label}: not valid JSON (${e.message}).`);
  }
}

function shardNames(indexBytes, label) {
  const index = parseJson(indexBytes, label);
  const map = index && index.weight_map;
  if (!map || typeof map !== "object") throw new Error(`${label}: it has no weight_map.`);
  const shards = [...new Set(Object.values(map))].sort();
  if (!shards.every((s) => typeof s === "string" && /^[^/\\]+$/.test(s) && s !== "." && s !== "..")) {
    throw new Error(`${label}: its weight_map must name shard files in the same folder.`);
  }
  return shards;
}

// The plan: {kind: "url" | "files", name, base, files: [{name, size}], download_bytes, saved,
// n_params_estimate, float32_bytes}, plus what is already in hand (bytes of small files, File objects).
async function planModel(source) {
  return source.local ? planLocalFiles(source.local) : planUrl(normalizeBase(source.base));
}

async function planUrl(base) {
  const name = nameOfBase(base);
  const saved = (await readRegistry())[base];
  if (saved && await allSaved(base, saved.files)) {  // no network at all: works offline
    const config = parseJson(await savedBytes(base, CONFIG_FILE), `${name}/${CONFIG_FILE}`);
    const nParams = estimateParams(config);
    const weightBytes = saved.files.filter((f) => !f.name.endsWith(".json")).reduce((s, f) => s + f.size, 0);
    return { kind: "url", name, base, files: saved.files, download_bytes: 0, saved: true,
      n_params_estimate: nParams, float32_bytes: checkFitsInTab(name, nParams, weightBytes), inHand: new Map() };
  }
  const inHand = new Map();  // small files read while planning: not fetched twice
  inHand.set(CONFIG_FILE, await fetchSmall(base + CONFIG_FILE, CONFIG_FILE));
  const config = parseJson(inHand.get(CONFIG_FILE), `${name}/${CONFIG_FILE}`);
  const files = [{ name: CONFIG_FILE, size: inHand.get(CONFIG_FILE).length }];
  const single = await headSize(base + SINGLE_FILE);
  if (single.ok) {
    files.push({ name: SINGLE_FILE, size: single.size });
  } else {
    let indexBytes;
    try {
      indexBytes = await fetchSmall(base + INDEX_FILE, INDEX_FILE);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new Error(`${base}: found neither ${SINGLE_FILE} (HTTP ${single.status}) nor ${INDEX_FILE}.`);
    }
    inHand.set(INDEX_FILE, indexBytes);
    files.push({ name: INDEX_FILE, size: indexBytes.length });
    const shards = shardNames(indexBytes, `${name}/${INDEX_FILE}`);
    const heads = await Promise.all(shards.map((shard) => headSize(base + shard)));
    heads.forEach((head, i) => {
      if (!head.ok) throw new Error(`${base + shards[i]}: the server answered HTTP ${head.status} (a shard listed in ${INDEX_FILE}).`);
      files.push({ name: shards[i], size: head.size });
    });
  }
  const tokenizer = await headSize(base + TOKENIZER_FILE);
  if (!tokenizer.ok) {
    throw new Error(`${base + TOKENIZER_FILE}: the server answered HTTP ${tokenizer.status}; the page `
      + "needs the model's tokenizer.json (a byte-level BPE, as GPT-NeoX's).");
  }
  files.push({ name: TOKENIZER_FILE, size: tokenizer.size });
  const nParams = estimateParams(config);
  const weightBytes = files.filter((f) => !f.name.endsWith(".json")).reduce((s, f) => s + f.size, 0);
  const float32Bytes = checkFitsInTab(name, nParams, weightBytes);
  return { kind: "url", name, base, files, saved: false, n_params_estimate: nParams,
    download_bytes: files.reduce((s, f) => s + f.size, 0), float32_bytes: float32Bytes, inHand };
}

async function planLocalFiles(fileList) {
  const byName = new Map(Array.from(fileList, (file) => [file.name, file]));
  const missing = (file) => new Error(`The chosen files have no ${file}. Choose config.json, `
    + `${SINGLE_FILE} (or ${INDEX_FILE} and its shards) and ${TOKENIZER_FILE} together.`);
  if (!byName.has(CONFIG_FILE)) throw missing(CONFIG_FILE);
  if (!byName.has(TOKENIZER_FILE)) throw missing(TOKENIZER_FILE);
  const configBytes = new Uint8Array(await byName.get(CONFIG_FILE).arrayBuffer());
  const config = parseJson(configBytes, CONFIG_FILE);
  const root = (byName.get(CONFIG_FILE).webkitRelativePath || "").split("/")[0];
  const name = root || (typeof config._name_or_path === "string" && config._name_or_path) || "local model";
  const wanted = [CONFIG_FILE, TOKENIZER_FILE];
  if (byName.has(SINGLE_FILE)) {
    wanted.push(SINGLE_FILE);
  } else if (byName.has(INDEX_FILE)) {
    const indexBytes = new Uint8Array(await byName.get(INDEX_FILE).arrayBuffer());
    const shards = shardNames(indexBytes, INDEX_FILE);
    const absent = shards.filter((s) => !byName.has(s));
    if (absent.length) throw new Error(`${INDEX_FILE} names ${absent.join(", ")}, which you did not choose.`);
    wanted.push(INDEX_FILE, ...shards);
  } else {
    throw missing(SINGLE_FILE);
  }
  const files = wanted.map((file) => ({ name: file, size: byName.get(file).size }));
  const nParams = estimateParams(config);
  const weightBytes = files.filter((f) => !f.name.endsWith(".json")).reduce((s, f) => s + f.size, 0);
  return { kind: "files", name, base: null, files, saved: false, download_bytes: 0,
    n_params_estimate: nParams, float32_bytes: checkFitsInTab(name, nParams, weightBytes),
    localFiles: byName };
}

// What the page is told before anything large is fetched.
function planSummary(plan) {
  const { kind, name, base, files, download_bytes, saved, n_params_estimate, float32_bytes } = plan;
  return { kind, name, base, files, download_bytes, saved, n_params_estimate, float32_bytes,
    total_bytes: files.reduce((s, f) => s + f.size, 0) };
}

// ---- the bytes: saved, downloaded or read from the user's files -------------------------------

// {files: Map name -> Uint8Array, storage: {saved: bool, note}}.
async function fetchPlannedFiles(plan, report) {
  const files = new Map();
  if (plan.kind === "files") {
    for (const { name } of plan.files) {
      files.set(name, new Uint8Array(await plan.localFiles.get(name).arrayBuffer()));
      report(files.get(name).length);
    }
    return { files, storage: { saved: false, note: "read from your files; not uploaded or saved" } };
  }
  if (plan.saved) {
    for (const { name } of plan.files) {
      files.set(name, await savedBytes(plan.base, name));
      report(files.get(name).length);
    }
    return { files, storage: { saved: true, note: "from this browser's storage; nothing downloaded" } };
  }
  await Promise.all(plan.files.map(async ({ name, size }) => {
    let bytes = plan.inHand.get(name);
    if (bytes) report(bytes.length);
    else bytes = await download(plan.base + name, `${plan.name}/${name}`, size, report);
    files.set(name, bytes);
  }));
  return { files, storage: await saveModel(plan, files) };
}

async function openModelCache() {
  try {
    return self.caches ? await caches.open(MODEL_CACHE_NAME) : null;
  } catch {
    return null;
  }
}

async function readRegistry() {
  const cache = await openModelCache();
  const response = cache && await cache.match(REGISTRY_URL);
  if (!response) return {};
  try {
    return await response.json();
  } catch {
    return {};
  }
}

async function writeRegistry(cache, registry) {
  await cache.put(REGISTRY_URL, new Response(JSON.stringify(registry),
    { headers: { "Content-Type": "application/json" } }));
}

async function allSaved(base, files) {
  const cache = await openModelCache();
  if (!cache) return false;
  for (const { name } of files) if (!await cache.match(base + name)) return false;
  return true;
}

async function savedBytes(base, name) {
  const cache = await openModelCache();
  const response = cache && await cache.match(base + name);
  if (!response) throw new Error(`${base + name} is no longer in this browser's storage; load the URL again.`);
  return new Uint8Array(await response.arrayBuffer());
}

// Save every file, then the registry entry (so a half-saved model is never listed). Short of quota,
// nothing is saved: the model stays in memory for this visit, and the page says so.
async function saveModel(plan, files) {
  const cache = await openModelCache();
  if (!cache) return { saved: false, note: "not saved: this browser offers no storage here; kept in memory for this visit" };
  const bytes = plan.files.reduce((s, f) => s + files.get(f.name).length, 0);
  const shortOfQuota = { saved: false, note: `not saved: the browser's storage quota is too small for `
    + `${gigabytes(bytes)} GB; kept in memory for this visit` };
  try {
    const { quota, usage } = await navigator.storage.estimate();
    if (quota !== undefined && usage !== undefined && quota - usage < bytes) return shortOfQuota;
  } catch {
    // no estimate: try, and handle a quota error below
  }
  try {
    for (const { name } of plan.files) await cache.put(plan.base + name, new Response(files.get(name)));
    const registry = await readRegistry();
    registry[plan.base] = { name: plan.name, base: plan.base, bytes, saved_at: Date.now(),
      files: plan.files.map(({ name }) => ({ name, size: files.get(name).length })) };
    await writeRegistry(cache, registry);
    return { saved: true, note: "saved in this browser for the next visit" };
  } catch (e) {
    for (const { name } of plan.files) await cache.delete(plan.base + name).catch(() => {});
    if (e && e.name === "QuotaExceededError") return shortOfQuota;
    return { saved: false, note: `not saved (${e.message}); kept in memory for this visit` };
  }
}

// [{name, base, bytes, files, saved_at}], newest first.
async function listSavedModels() {
  return Object.values(await readRegistry()).sort((a, b) => b.saved_at - a.saved_at);
}

async function deleteSavedModel(base) {
  const cache = await openModelCache();
  if (!cache) return;
  const registry = await readRegistry();
  const entry = registry[base];
  delete registry[base];
  await writeRegistry(cache, registry);
  for (const { name } of entry ? entry.files : []) await cache.delete(base + name);
}

function modelProgressText(name, plan) {
  if (plan === null) return `Downloading ${name}…`;
  if (plan.kind === "files") return `Reading your files for ${name}…`;
  if (plan.saved) return `Reading ${name} from this browser's storage…`;
  return `Downloading ${name} (${(plan.download_bytes / 1e6).toFixed(1)} MB)…`;
}
