// Models from elsewhere (worker side): a folder URL (a Hugging Face repository's resolve/main/ URL,
// or any static folder) or files the user picked on this device; a llama.cpp .gguf file (a URL or
// one file) is planned by gguf-source.js, then fetched and saved here like the rest.
//
//   planModel(source, describe, signal, budget, describeGguf)   what to fetch and how big it is, BEFORE any weight is
//                          downloaded: file sizes (HEAD requests, or File.size), what config.json
//                          describes (Python's plan.describe_config, through `describe`), and the
//                          refusal of a model too large for a tab
//   fetchPlannedFiles(plan, count, signal)   the bytes: from the Cache API when saved there, else
//                          downloaded (and put in the cache, unlisted) or read from the user's files
//   listSaved(plan, ...) / forgetSaved(base)   the registry entry, written only once the model
//                          loaded; a model that fails to load is dropped from the cache
//   listSavedModels(), deleteSavedModel(base)   what the page lists, with a delete button
//
// A saved model is used as is, without asking the server again: after one visit it works offline.
// Local files are read in the worker and never saved or sent anywhere (the user has them).

import facts from "./facts.js";
import { MAX_WORKERS } from "./shard-pool.js";
import { checkedFetch, download, mapLimited, openCache, readBody, refusedUrl, unreachable } from "./downloads.js";
import { ggufUrl, isGgufName, planGguf } from "./gguf-source.js";

const MODEL_CACHE_NAME = "mamba-wasm-models-v1";  // one entry per file URL, plus the registry
// The registry of saved models {base: {name, base, files: [{name, size}], bytes, saved_at}}, kept in
// the same cache under a URL of this site that is never fetched.
const REGISTRY_URL = new URL("saved-models/registry.json", self.location.href).href;

const { config: CONFIG_FILE, single: SINGLE_FILE, index: INDEX_FILE, tokenizer: TOKENIZER_FILE } = facts.files;
// What a model's server may send (the package's limits, docs/RELIABILITY.md "Hostile server"):
// at most max_shards shards, each a plain file name; weight files no larger than config.json
// implies; a tokenizer.json of at most max_tokenizer_bytes.
const LIMITS = facts.limits;
const SHARD_NAME = new RegExp(`^(?:${LIMITS.shard_name_pattern})$`);
const SMALL_FILE_LIMIT = { bytes: 16e6, why: "the limit for a config.json or shard index on this page" };
const IN_FLIGHT = 6;  // requests at once to a model's server, as a browser allows per host

// wasm32 gives a tab at most 4 GB of WebAssembly memory (Pyodide 0.27 grows to that). The weights are
// held as float32 (F16/BF16 tensors are upcast one at a time, next to the file bytes, which are dropped
// after loading), so the peak is the file bytes plus the float32 weights: at most 3 GB under this
// limit (a 16-bit file is half its float32 size), leaving room for Python, NumPy and the state.
// mamba-370m (1.5 GB) fits; mamba-790m (3.2 GB) does not.
const MAX_FLOAT32_WEIGHT_BYTES = 2e9;

const gigabytes = (n) => (n / 1e9).toFixed(1);

// ---- planning: names, sizes and the memory check ----------------------------------------------

// "https://huggingface.co/owner/repo" (a repository page) -> ".../resolve/main/"; a URL of a file
// in the folder (".../config.json") -> the folder; always with a trailing slash. Only http(s).
export function normalizeBase(text) {
  let url;
  try {
    url = new URL(text.trim(), self.location.href);
  } catch {
    throw new Error(`"${text}" is not a URL: give a folder's http(s) address.`);
  }
  const refusal = refusedUrl(url.href);
  if (refusal) throw new Error(refusal);
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

// The URL of file `name` of a saved or planned model: a folder's file, or the one .gguf file
// (whose base is the file's own URL).
const fileUrl = (base, name) => (base.endsWith("/") ? base + name : base);

// What a load may hold: `workers` workers, each at most `perWorker` bytes of float32 weights
// (MAX_FLOAT32_WEIGHT_BYTES; a load request's worker_weight_limit can only lower it, so that a test
// takes the over-the-limit path on a small model).
export function weightBudget(workers = 1, lowered = undefined) {
  const perWorker = lowered > 0 ? Math.min(lowered, MAX_FLOAT32_WEIGHT_BYTES) : MAX_FLOAT32_WEIGHT_BYTES;
  return { workers, perWorker };
}

// Refuse, before downloading, a model whose float32 weights would not fit in the tab: in each
// worker's heap, with the model split across budget.workers workers (each holds 1/K: shard-leader.js).
// One too large for one heap is offered split across enough workers, unless it cannot be split
// (a .gguf file).
function checkFitsInTab(name, description, { workers, perWorker }, splittable = true) {
  if (description.float32_bytes <= perWorker * workers) return;
  const needed = Math.ceil(description.float32_bytes / perWorker);
  const split = workers > 1 ? `split across ${workers} workers, ` : "";
  const way = splittable && needed <= MAX_WORKERS
    ? `It fits split across ${needed} workers: set Workers to ${needed} and reload, or open this page with `
      + `?workers=${needed} (on a cross-origin isolated site, python3 build.py serve --isolated, the workers `
      + "share memory; elsewhere they need a browser with WebAssembly JavaScript Promise Integration)."
    : "Pick a smaller model, such as mamba-130m-hf or mamba-370m-hf.";
  throw new Error(`${name} is too large for a browser tab ${split}as it is: its weights take `
    + `${gigabytes(description.float32_bytes)} GB as float32 (${(description.n_params / 1e6).toFixed(0)}M `
    + `parameters), and one worker holds at most ${gigabytes(perWorker)} GB of `
    + "weights (a worker's WebAssembly memory is 4 GB at most, and loading needs room for the file "
    + `too). Nothing was downloaded. ${way}`);
}

async function headSize(url, signal) {
  let response;
  try {
    response = await checkedFetch(url, { method: "HEAD", cache: "no-cache", signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Error(await unreachable(url, e));
  }
  if (!response.ok) return { ok: false, status: response.status, size: 0 };
  return { ok: true, status: response.status, size: Number(response.headers.get("Content-Length")) || 0 };
}

async function fetchSmall(url, what, signal) {
  let response;
  try {
    response = await checkedFetch(url, { cache: "no-cache", signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Error(await unreachable(url, e));
  }
  if (!response.ok) {
    throw new Error(`${url}: the server answered HTTP ${response.status}; is this a folder with ${what}?`);
  }
  return readBody(response, url, 0, () => {}, SMALL_FILE_LIMIT);
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
  if (shards.length > LIMITS.max_shards) {
    throw new Error(`${label}: the index names ${shards.length.toLocaleString("en")} shard files; the limit `
      + `is ${LIMITS.max_shards} (each is one more download). Nothing was downloaded.`);
  }
  const bad = shards.find((s) => typeof s !== "string" || !SHARD_NAME.test(s) || s === "." || s === "..");
  if (bad !== undefined) {
    throw new Error(`${label}: shard ${JSON.stringify(bad).slice(0, 100)} must be a plain file name in the `
      + "model's folder (letters, digits and . _ - + only: no path, no percent-escapes).");
  }
  return shards;
}

// The plan: {kind: "url" | "files", name, base, files: [{name, size}], download_bytes, saved,
// description (plan.describe_config's)}, plus what is already in hand (bytes of small files, File
// objects). describe(configBytes, label) is Python's description of config.json: it raises for a
// config that is not a model the package reads, before anything large is fetched.
export async function planModel(source, describe, signal, budget = weightBudget(), describeGguf) {
  // A .gguf model is not split across workers (shard-leader.js cuts safetensors): it must fit one.
  const fitsOneWorker = (name, description) => checkFitsInTab(name, description, { ...budget, workers: 1 }, false);
  if (source.local && Array.from(source.local, (f) => f.name).some(isGgufName)) {
    if (source.local.length > 1) {
      throw new Error("Choose the .gguf file alone: it holds the model and its tokenizer.");
    }
    return planGguf({ local: source.local[0] }, describeGguf, signal, fitsOneWorker);
  }
  const gguf = source.local ? null : ggufUrl(source.base);
  if (gguf) {
    const saved = (await readRegistry())[gguf];
    const blob = saved && await allSaved(gguf, saved.files) ? await savedBlob(gguf, saved.files[0].name) : null;
    return planGguf({ url: gguf, saved: blob }, describeGguf, signal, fitsOneWorker);
  }
  return source.local ? planLocalFiles(source.local, describe, budget)
    : planUrl(normalizeBase(source.base), describe, signal, budget);
}

async function planUrl(base, describe, signal, budget) {
  const name = nameOfBase(base);
  const saved = (await readRegistry())[base];
  if (saved && await allSaved(base, saved.files)) {  // no network at all: works offline
    const description = describe(await savedBytes(base, CONFIG_FILE), `${name}/${CONFIG_FILE}`);
    checkFitsInTab(name, description, budget);
    return { kind: "url", name, base, files: saved.files, download_bytes: 0, saved: true,
      description, inHand: new Map() };
  }
  const inHand = new Map();  // small files read while planning: not fetched twice
  inHand.set(CONFIG_FILE, await fetchSmall(base + CONFIG_FILE, CONFIG_FILE, signal));
  const description = describe(inHand.get(CONFIG_FILE), `${name}/${CONFIG_FILE}`);
  checkFitsInTab(name, description, budget);
  const files = [{ name: CONFIG_FILE, size: inHand.get(CONFIG_FILE).length }];
  const single = await headSize(base + SINGLE_FILE, signal);
  if (single.ok) {
    files.push({ name: SINGLE_FILE, size: single.size });
  } else {
    let indexBytes;
    try {
      indexBytes = await fetchSmall(base + INDEX_FILE, INDEX_FILE, signal);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new Error(`${base}: found neither ${SINGLE_FILE} (HTTP ${single.status}) nor ${INDEX_FILE}.`);
    }
    inHand.set(INDEX_FILE, indexBytes);
    files.push({ name: INDEX_FILE, size: indexBytes.length });
    const shards = shardNames(indexBytes, `${name}/${INDEX_FILE}`);
    const heads = await mapLimited(shards, IN_FLIGHT, async (shard) => {
      const head = await headSize(base + shard, signal);
      if (!head.ok) throw new Error(`${base + shard}: the server answered HTTP ${head.status} (a shard listed in ${INDEX_FILE}).`);
      return head;
    });
    heads.forEach((head, i) => files.push({ name: shards[i], size: head.size }));
  }
  checkWeightBytes(name, files, description);
  const tokenizer = await headSize(base + TOKENIZER_FILE, signal);
  if (!tokenizer.ok) {
    throw new Error(`${base + TOKENIZER_FILE}: the server answered HTTP ${tokenizer.status}; the page `
      + "needs the model's tokenizer.json (a byte-level BPE, as GPT-NeoX's).");
  }
  files.push({ name: TOKENIZER_FILE, size: tokenizer.size });
  return { kind: "url", name, base, files, saved: false, description,
    download_bytes: files.reduce((s, f) => s + f.size, 0), inHand };
}

async function planLocalFiles(fileList, describe, budget) {
  const byName = new Map(Array.from(fileList, (file) => [file.name, file]));
  const missing = (file) => new Error(`The chosen files have no ${file}. Choose ${CONFIG_FILE}, `
    + `${SINGLE_FILE} (or ${INDEX_FILE} and its shards) and ${TOKENIZER_FILE} together.`);
  if (!byName.has(CONFIG_FILE)) throw missing(CONFIG_FILE);
  if (!byName.has(TOKENIZER_FILE)) throw missing(TOKENIZER_FILE);
  const configBytes = new Uint8Array(await byName.get(CONFIG_FILE).arrayBuffer());
  const config = parseJson(configBytes, CONFIG_FILE);
  const root = (byName.get(CONFIG_FILE).webkitRelativePath || "").split("/")[0];
  const name = root || (typeof config._name_or_path === "string" && config._name_or_path) || "local model";
  const description = describe(configBytes, `${name}/${CONFIG_FILE}`);
  checkFitsInTab(name, description, budget);
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
  checkWeightBytes(name, files, description);
  return { kind: "files", name, base: null, files, saved: false, download_bytes: 0, description,
    localFiles: byName };
}

const isWeightFile = (name) => name !== CONFIG_FILE && name !== INDEX_FILE && name !== TOKENIZER_FILE;

// The most the weight files may hold: config.json's tensors as float32, plus a header per file.
function weightLimit(description, files) {
  const count = files.filter((f) => isWeightFile(f.name)).length;
  return description.max_weight_bytes + LIMITS.header_slack_bytes * Math.max(1, count);
}

// Refuse, before downloading, weight files the server says are larger than config.json implies.
function checkWeightBytes(name, files, description) {
  const total = files.filter((f) => isWeightFile(f.name)).reduce((s, f) => s + f.size, 0);
  const limit = weightLimit(description, files);
  if (total > limit) {
    throw new Error(`${name}: the server says its weight files hold ${total.toLocaleString("en")} bytes, but `
      + `config.json implies at most ${limit.toLocaleString("en")} (its tensors as float32, plus `
      + `${LIMITS.header_slack_bytes.toLocaleString("en")} bytes per file for the header). Nothing was `
      + "downloaded: the files hold data no tensor needs, or config.json does not describe them.");
  }
}

// The most a file of the plan may hold: what the server said before (HEAD), or when it gave no
// size, or compresses the file, the most such a file may hold at all.
function fileLimit(plan, name, size) {
  const most = plan.maxFileBytes ? { bytes: plan.maxFileBytes, why: "the most a GGUF file of this model can hold" }
    : isWeightFile(name)
    ? { bytes: weightLimit(plan.description, plan.files), why: "the most config.json's tensors can fill" }
    : { bytes: LIMITS.max_tokenizer_bytes, why: "the limit for a tokenizer.json" };
  if (!size) return most;
  return { bytes: size, why: "the size the server gave for this file before the download", encoded: most };
}

// What the page is told before anything large is fetched.
export function planSummary(plan) {
  const { kind, name, base, files, download_bytes, saved, description } = plan;
  return { kind, name, base, files, download_bytes, saved, description,
    total_bytes: files.reduce((s, f) => s + f.size, 0),
    ...(plan.format ? { format: plan.format, quantization: plan.quantization, weight_bytes: plan.weight_bytes } : {}) };
}

export function planProgressText(plan) {
  if (plan.kind === "files") return `Reading your files for ${plan.name}…`;
  if (plan.saved) return `Reading ${plan.name} from this browser's storage…`;
  return `Downloading ${plan.name} (${(plan.download_bytes / 1e6).toFixed(1)} MB)…`;
}

// ---- the bytes: saved, downloaded or read from the user's files -------------------------------

// {files: Map name -> Uint8Array, storage: {saved: bool, note}}. Downloaded files go into the
// cache as they are, but the model is listed as saved only once it loaded (listSaved).
export async function fetchPlannedFiles(plan, count, signal) {
  const files = new Map();
  if (plan.kind === "files") {
    for (const { name } of plan.files) {
      files.set(name, new Uint8Array(await plan.localFiles.get(name).arrayBuffer()));
      count(files.get(name).length);
    }
    return { files, storage: { saved: false, note: "read from your files; not uploaded or saved" } };
  }
  if (plan.saved) {
    for (const { name } of plan.files) {
      files.set(name, await savedBytes(plan.base, name));
      count(files.get(name).length);
    }
    return { files, storage: { saved: true, note: "from this browser's storage; nothing downloaded" } };
  }
  await mapLimited(plan.files, IN_FLIGHT, async ({ name, size }) => {
    let bytes = plan.inHand.get(name);
    const label = plan.format ? plan.name : `${plan.name}/${name}`;
    if (bytes) count(bytes.length);
    else if (plan.rest) bytes = await plan.rest(count);  // a .gguf download begun while planning
    else bytes = await download(fileUrl(plan.base, name), label, size, count, signal, fileLimit(plan, name, size));
    files.set(name, bytes);
  });
  plan.files = plan.files.map(({ name }) => ({ name, size: files.get(name).length }));  // HEAD may not say
  return { files, storage: await cacheFiles(plan, files) };
}

async function openModelCache() {
  return openCache(MODEL_CACHE_NAME);
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
  for (const { name } of files) if (!await cache.match(fileUrl(base, name))) return false;
  return true;
}

async function savedBytes(base, name) {
  const cache = await openModelCache();
  const response = cache && await cache.match(fileUrl(base, name));
  if (!response) throw new Error(`${fileUrl(base, name)} is no longer in this browser's storage; load the URL again.`);
  return new Uint8Array(await response.arrayBuffer());
}

async function savedBlob(base, name) {
  const cache = await openModelCache();
  const response = cache && await cache.match(fileUrl(base, name));
  return response ? response.blob() : null;
}

// Put every file in the cache (not yet listed: see listSaved). Short of quota, nothing is kept:
// the model stays in memory for this visit, and the page says so.
async function cacheFiles(plan, files) {
  const cache = await openModelCache();
  if (!cache) return { saved: false, note: "not saved: this browser offers no storage here; kept in memory for this visit" };
  const bytes = plan.files.reduce((s, f) => s + files.get(f.name).length, 0);
  const shortOfQuota = { saved: false, note: "not saved: the browser's storage quota is too small for "
    + `${gigabytes(bytes)} GB; kept in memory for this visit` };
  try {
    const { quota, usage } = await navigator.storage.estimate();
    if (quota !== undefined && usage !== undefined && quota - usage < bytes) return shortOfQuota;
  } catch {
    // no estimate: try, and handle a quota error below
  }
  try {
    for (const { name } of plan.files) await cache.put(fileUrl(plan.base, name), new Response(files.get(name)));
    return { saved: true, note: "saved in this browser for the next visit" };
  } catch (e) {
    await dropFiles(cache, plan.base, plan.files);
    if (e && e.name === "QuotaExceededError") return shortOfQuota;
    return { saved: false, note: `not saved (${e.message}); kept in memory for this visit` };
  }
}

async function dropFiles(cache, base, files) {
  for (const { name } of files) await cache.delete(fileUrl(base, name)).catch(() => {});
}

// The model of `plan` loaded: list it as saved (its files are in the cache already).
export async function listSaved(plan) {
  const cache = await openModelCache();
  const registry = await readRegistry();
  registry[plan.base] = { name: plan.name, base: plan.base, saved_at: Date.now(),
    bytes: plan.files.reduce((s, f) => s + f.size, 0), files: plan.files };
  await writeRegistry(cache, registry);
}

// The model of `plan` failed to load: drop its files, and its registry entry if an earlier visit
// saved it. True when something saved was dropped.
export async function forgetSaved(plan) {
  if (plan.kind !== "url") return false;
  const cache = await openModelCache();
  if (!cache) return false;
  await dropFiles(cache, plan.base, plan.files);
  if (!plan.saved) return false;
  await deleteSavedModel(plan.base);
  return true;
}

// [{name, base, bytes, files, saved_at}], newest first.
export async function listSavedModels() {
  return Object.values(await readRegistry()).sort((a, b) => b.saved_at - a.saved_at);
}

export async function deleteSavedModel(base) {
  const cache = await openModelCache();
  if (!cache) return;
  const registry = await readRegistry();
  const entry = registry[base];
  delete registry[base];
  await writeRegistry(cache, registry);
  await dropFiles(cache, base, entry ? entry.files : []);
}
