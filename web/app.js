// The page (main thread): reads the model list, drives the worker, shows what it streams. All
// Python runs in the worker; this module wires the page's parts together (settings.js, status.js,
// transcript.js, own-model.js) and holds the page's state. Everything the model or the network
// provides is inserted with textContent, never as HTML.

import { formatBytes, formatCount } from "./format.js";
import { OwnModelPanel } from "./own-model.js";
import { Settings } from "./settings.js";
import { OutputTools } from "./output-tools.js";
import { ShardPool } from "./shard-pool.js";
import { ScoreView } from "./score-view.js";
import { StateView } from "./state-view.js";
import { StatusBar } from "./status.js";
import { TokenView } from "./token-view.js";
import { Transcript } from "./transcript.js";
import { WorkerClient } from "./worker-client.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), modelInfo: $("model-info"), prompt: $("prompt"),
  generate: $("generate"), stop: $("stop"), cancel: $("cancel"), retry: $("retry"),
  regenerate: $("regenerate"), continue: $("continue"), stopNearOutput: $("stop-near-output"),
  tokenCount: $("token-count"), tokensPerSecond: $("tokens-per-second"),
  timeToFirstToken: $("time-to-first-token"), lastSeed: $("last-seed"), modelCard: $("model-card"),
  shortcut: $("shortcut"), settings: $("settings"), transcriptBox: document.querySelector(".transcript"),
};
const status = new StatusBar(document);
const settings = new Settings(document, ui.prompt);
const transcript = new Transcript(document);
const EXTERNAL = "\u0000external";  // the Model select's value for a model not in the site's list

// The page's state, in one place.
const page = {
  current: null,       // the request in flight: {id, type, fields}
  retryAction: null,   // what Retry does after a failed load: that load again, or a reload
  loadedModel: null,   // name of the model the worker holds, once one loaded
  models: [],          // entries of models/index.json
  generationStartedAt: 0,
  lastRun: {},         // figures of the latest generation, from its started and done messages
  lastPrompt: null,    // the latest generation's prompt (Regenerate is offered once there is one)
  canContinue: false,  // the latest generation was stopped or ran out of tokens: Continue resumes it
  firstTokenAt: null,  // when the current generation's first text arrived
  pendingLoad: null,   // a load asked for while generating: sent once the Stop it caused lands
  loadStartedAt: 0,    // the first load counts from the page's own start (navigation), later ones from the click
  firstLoad: true,
  loadedSource: null,  // where the loaded model came from: the ready message's source
  siteSizes: new Map(),  // model name -> bytes of its files (from manifest.json)
};

// ---- state -------------------------------------------------------------------------------------

function setState(state) {
  document.body.dataset.state = state;  // loading | ready | generating | error
  const busy = state === "loading" || state === "generating";
  ui.generate.disabled = state !== "ready";
  ui.stop.disabled = state !== "generating";
  ui.stopNearOutput.disabled = state !== "generating";
  ui.transcriptBox.setAttribute("aria-busy", String(state === "generating"));
  ui.regenerate.disabled = state !== "ready" || page.lastPrompt === null;
  ui.continue.disabled = state !== "ready" || !page.canContinue;
  ui.model.disabled = busy || page.models.length === 0;
  status.progress.hidden = state !== "loading";
  ui.cancel.hidden = !(state === "loading" && page.current && page.current.type === "load");
  ui.retry.hidden = page.retryAction === null || busy;
  scoreView.setEnabled(state === "ready");
}

function clearError() {
  status.clearError();
  page.retryAction = null;
}

function send(type, fields) {
  const id = client.request(type, fields);
  page.current = { id, type, fields };
  return id;
}

// ---- models ------------------------------------------------------------------------------------

async function readJson(path) {
  const response = await fetch(path, { cache: "no-cache" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// The site's models, each shown with its download size (from manifest.json) before it is loaded.
async function readModelIndex() {
  const [index, manifest] = await Promise.all([readJson("models/index.json"),
    readJson("manifest.json").catch(() => ({ files: {} }))]);
  page.models = index.models;
  for (const m of page.models) {
    const sizes = m.files.map((file) => manifest.files[`models/${m.path}/${file}`]);
    if (sizes.every(Boolean)) page.siteSizes.set(m.name, sizes.reduce((sum, f) => sum + f.size, 0));
  }
  ui.model.replaceChildren(...page.models.map((m) => {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = page.siteSizes.has(m.name)
      ? `${m.name} · ${formatBytes(page.siteSizes.get(m.name))}` : m.name;
    option.title = m.description || "";
    return option;
  }));
  return index;
}

// The Model select shows what is loaded: a site model by its entry, any other by an extra option
// with its real name and where it came from.
function showLoadedModel(name, source) {
  const stale = ui.model.querySelector(`option[value="${EXTERNAL}"]`);
  if (stale) stale.remove();
  if (source.kind === "site") {
    ui.model.value = name;
    return;
  }
  const option = document.createElement("option");
  option.value = EXTERNAL;
  const where = source.kind === "files" ? "your files" : new URL(source.base).host;
  option.textContent = `${name} · ${where}`;
  option.title = source.base || "";
  ui.model.append(option);
  ui.model.value = EXTERNAL;
}

function showModelCard(entry) {
  ui.modelCard.hidden = !(entry && entry.card);
  if (entry && entry.card) ui.modelCard.href = `models/${entry.path.replace(/\/?$/, "/")}${entry.card}`;
}

function loadModel(name) {
  if (name === EXTERNAL) return;
  const entry = page.models.find((m) => m.name === name);
  ui.model.value = name;
  ui.modelInfo.textContent = entry.description || "";
  showModelCard(entry);
  const base = new URL(`models/${entry.path.replace(/\/?$/, "/")}`, location.href).href;
  sendLoad({ model: { name, base, files: entry.files } });
}

// A model from elsewhere: {name, base} (a folder URL) or {name, local: [File]} (the user's files).
// The worker plans it (model-store.js): sizes and the memory check come before any download.
function loadExternal(model) {
  if (externalRefused(model)) return;
  ui.modelInfo.textContent = "";
  showModelCard(null);
  requestLoad({ model });
}

// Only http(s) folders are fetched: anything else is refused here with a message. True if refused.
function externalRefused(model) {
  if (model.base === undefined || /^https?:\/\//i.test(model.base.trim())) return false;
  status.showError(`"${model.base}" is not a web address: give a folder's https:// URL.`);
  return true;
}

// A load now, or, while generating, once the Stop it causes lands; while another load runs, say why not.
function requestLoad(fields) {
  const state = document.body.dataset.state;
  if (state === "generating") {
    page.pendingLoad = fields;
    stop();
    status.set("Stopping the generation to load the model…");
    return;
  }
  if (state === "loading") {
    status.showError("A model is loading: wait for it, or Cancel it, then load another.");
    return;
  }
  sendLoad(fields);
}

// A load request (also what Retry sends again); Cancel is offered while it runs.
function sendLoad(fields) {
  clearError();
  if (!page.firstLoad) page.loadStartedAt = performance.now();
  page.firstLoad = false;
  send("load", pool.loadFields(fields));
  setState("loading");
  const name = fields.model.name;
  status.set(page.loadedModel === null ? "Loading Python, NumPy and the model…" : `Loading ${name}…`);
  status.resetProgress();
}

function cancelLoad() {
  if (page.current && page.current.type === "load") {
    client.request("cancel", { id: page.current.id });
    status.set("Cancelling…");
  }
}

// Back to what the page had before a load that failed or was cancelled; Retry sends it again.
function afterFailedLoad(fields, what, offerRetry = true) {
  page.current = null;
  page.retryAction = fields && offerRetry ? () => sendLoad(fields) : null;
  if (page.loadedModel !== null) {
    showLoadedModel(page.loadedModel, page.loadedSource);
    status.set(`${what}; still using ${page.loadedModel}.`);
    setState("ready");
  } else {
    status.set(`${what}. Retry, pick another model, or reload the page.`);
    setState("error");
  }
}

// The worker is gone: say so, and offer the one way back, a reload.
function workerDied(message) {
  pool.terminate();  // a model split across workers is down when any of them is
  page.loadedModel = null;
  page.current = null;
  status.showError(message);
  page.retryAction = () => location.reload();
  ui.retry.textContent = "Reload";
  status.set("Error: the worker stopped");
  setState("error");
}

// ---- generation --------------------------------------------------------------------------------

// Generate from the prompt in the box. Focus moves to Stop (Esc works anywhere) while it runs.
function generate() {
  if (document.body.dataset.state !== "ready") return;
  clearError();
  const params = settings.read();
  if (params === null) return;
  const prompt = ui.prompt.value;
  transcript.start(prompt);
  tokenView.start();
  scoreView.hide();
  ui.tokenCount.textContent = "0";
  ui.tokensPerSecond.textContent = "0";
  ui.timeToFirstToken.textContent = "–";
  ui.lastSeed.textContent = String(params.seed);
  page.lastPrompt = prompt;
  page.canContinue = false;
  startGenerating("Reading the prompt…");
  send("generate", { prompt, params, ...tokenView.requestFields() });
}

function startGenerating(text) {
  const hadFocus = document.activeElement;
  setState("generating");
  status.set(text);
  page.generationStartedAt = performance.now();
  page.firstTokenAt = null;
  if (hadFocus === document.body || hadFocus === null || hadFocus.disabled
    || hadFocus === ui.generate || hadFocus === ui.regenerate || hadFocus === ui.continue) {
    ui.stop.focus();
  }
}

// Regenerate is Generate again (the prompt in the box, a new seed when the seed field is empty):
// when the prompt is unchanged the worker restores the state it saved right after it instead of
// running the prompt again.
function regenerate() {
  generate();
}

// Resume the stopped generation: up to "max new tokens" more, appended to the output. The sampling
// settings are those of the generation it continues (its sampler and seed carry on).
function continueGeneration() {
  if (document.body.dataset.state !== "ready" || !page.canContinue) return;
  clearError();
  const params = settings.read();
  if (params === null) return;
  page.canContinue = false;
  startGenerating("Continuing…");
  send("continue", { more_tokens: params.max_new_tokens });
}

function stop() {
  if (page.current && (page.current.type === "generate" || page.current.type === "continue")) {
    client.request("stop", { id: page.current.id });
    status.set("Stopping…");
  }
}

function noteFirstToken() {
  if (page.firstTokenAt !== null) return;
  page.firstTokenAt = performance.now();
  ui.timeToFirstToken.textContent = `${((page.firstTokenAt - page.generationStartedAt) / 1000).toFixed(2)} s`;
}

// A generation ended: ready again, focus back on Generate when it was on Stop, and a load asked
// for meanwhile goes ahead.
function finishGenerating() {
  const focusWasOnStop = document.activeElement === ui.stop || document.activeElement === ui.stopNearOutput
    || document.activeElement === document.body;
  setState("ready");
  if (focusWasOnStop) ui.generate.focus();
  stateView.refresh();
  if (page.pendingLoad) {
    const fields = page.pendingLoad;
    page.pendingLoad = null;
    sendLoad(fields);
  }
}

// ---- messages from the worker ------------------------------------------------------------------

// Answers to a request other than the one in flight are stale (a cancelled load, say): dropped.
const forCurrent = (handler) => (msg) => {
  if (page.current && msg.id !== page.current.id) return;
  handler(msg);
};

const handlers = {
  progress: forCurrent((msg) => status.showProgress(msg)),

  plan: forCurrent((msg) => ownModel.showPlan(msg)),

  ready: forCurrent((msg) => {
    page.loadedModel = msg.model.name;
    const source = msg.source;  // a URL's model: saved in this browser, or why not
    page.loadedSource = source;
    showLoadedModel(page.loadedModel, source);
    const info = source.kind === "site" ? page.models.find((m) => m.name === page.loadedModel) : null;
    const where = source.kind === "url" ? ` · from ${source.base}` : source.kind === "files" ? " · from your files" : "";
    ui.modelInfo.textContent = `${msg.model.architecture}, ${formatCount(msg.model.n_params)} parameters `
      + `(${formatBytes(msg.model.float32_bytes)} as float32) · recurrent state ${formatBytes(msg.model.state_nbytes)}`
      + where + (info && info.description ? ` · ${info.description}` : "")
      + (source.note ? ` · ${source.note}` : "");
    showModelCard(info);
    document.body.dataset.modelSource = JSON.stringify(source);  // for tests
    page.canContinue = false;  // a new model has a new session
    const seconds = (performance.now() - page.loadStartedAt) / 1000;
    status.set(`Ready: ${page.loadedModel} (loaded in ${seconds.toFixed(1)} s)`);
    document.body.dataset.timings = JSON.stringify(msg.timings);  // for tests and benchmarks
    page.current = null;
    setState("ready");
    ui.prompt.focus();
    client.request("saved-list");  // a URL's model was just saved
  }),

  started: forCurrent((msg) => {
    page.lastRun = { n_prompt: msg.n_prompt, prefill_ms: msg.prefill_ms, n_prefilled: msg.n_prefilled,
      prompt_state_reused: msg.prompt_state_reused, state_nbytes: msg.state_nbytes,
      continued: msg.continued };
    const state = `${formatCount(msg.state_nbytes)} bytes`;
    let prompt = `prompt: ${msg.n_prompt} tokens in ${(msg.prefill_ms / 1000).toFixed(2)} s`;
    if (msg.continued) prompt = `continuing from where it stopped: state kept (${state})`;
    else if (msg.prompt_state_reused) prompt = `state after the prompt reused (${state})`;
    status.set(`Generating… (${prompt})`);
  }),

  token: forCurrent((msg) => {
    noteFirstToken();
    if (!tokenView.append(msg)) transcript.append(msg.text);
    ui.tokenCount.textContent = String(msg.n_generated);
    ui.tokensPerSecond.textContent = msg.tokens_per_second.toFixed(1);
  }),

  done: forCurrent((msg) => {
    if (msg.n_generated > 0) noteFirstToken();
    if (!tokenView.append(msg)) transcript.append(msg.text);
    ui.tokenCount.textContent = String(msg.n_generated);
    ui.tokensPerSecond.textContent = msg.tokens_per_second.toFixed(1);
    Object.assign(page.lastRun, { reason: msg.reason, n_generated: msg.n_generated,
      tokens_per_second: msg.tokens_per_second, tokens_after_stop: msg.tokens_after_stop,
      wasm_heap_bytes: msg.wasm_heap_bytes, python_objects: msg.python_objects });
    document.body.dataset.lastRun = JSON.stringify(page.lastRun);  // for tests and benchmarks
    const why = { stopped: "stopped", length: "reached max new tokens", eos: "end of text" };
    const seconds = ((performance.now() - page.generationStartedAt) / 1000).toFixed(1);
    page.canContinue = msg.reason === "stopped" || msg.reason === "length";
    status.set(`Done (${why[msg.reason] || msg.reason}): ${msg.n_generated} tokens in ${seconds} s`);
    page.current = null;
    finishGenerating();
  }),

  error: forCurrent((msg) => {
    status.showError(msg.message);
    if (msg.during === "load") {
      client.request("saved-list");  // a saved model that failed to load was dropped
      // The worker keeps the model it had; without one, Retry or another model is the way out.
      afterFailedLoad(page.current && page.current.fields, page.loadedModel === null
        ? "Could not load the model" : "Could not load that model");
    } else {
      page.current = null;
      status.set(page.loadedModel ? `Ready: ${page.loadedModel}` : "Error");
      if (page.loadedModel) finishGenerating();
      else setState("error");
    }
  }),

  cancelled: forCurrent(() => {  // back to the model the page had; Retry only when it had none
    afterFailedLoad(page.current && page.current.fields, "Loading cancelled", page.loadedModel === null);
  }),

  saved: (msg) => ownModel.showSaved(msg),  // answers requests made beside the current one

  "shard-load": (msg) => pool.forward(msg),  // the leader's part of the files for another worker

  branched: forCurrent((msg) => tokenView.branched(msg)),

  scored: forCurrent((msg) => {
    scoreView.show(msg);
    status.set(`Scored ${msg.totals.tokens} tokens`);
    page.current = null;
    page.canContinue = false;
    finishGenerating();
  }),

  probed: (msg) => stateView.show(msg),  // asked beside the current request, by the state view
};

const client = new WorkerClient(handlers, workerDied);
const pool = new ShardPool(document, (message) => {
  client.terminate();
  workerDied(message);
});
const ownModel = new OwnModelPanel(document, {
  loadExternal,
  deleteSaved: (base) => client.request("saved-delete", { base }),
  showPlan: (text) => { ui.modelInfo.textContent = text; },
});

// ---- wiring ------------------------------------------------------------------------------------

ui.generate.addEventListener("click", () => generate());
ui.stop.addEventListener("click", stop);
ui.stopNearOutput.addEventListener("click", stop);
ui.regenerate.addEventListener("click", regenerate);
ui.continue.addEventListener("click", continueGeneration);
ui.cancel.addEventListener("click", cancelLoad);
ui.retry.addEventListener("click", () => page.retryAction && page.retryAction());
ui.model.addEventListener("change", () => loadModel(ui.model.value));
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    generate();
  } else if (event.key === "Escape" && document.body.dataset.state === "generating") {
    event.preventDefault();
    stop();
  }
});

// The shortcut as this device spells it: none on a touch screen, Cmd on a Mac.
const mac = /Mac|iPhone|iPad/.test(navigator.userAgentData?.platform || navigator.platform || "");
ui.shortcut.hidden = matchMedia("(pointer: coarse)").matches;
ui.shortcut.textContent = `${mac ? "⌘" : "Ctrl"}+Enter`;
ui.generate.setAttribute("aria-keyshortcuts", mac ? "Meta+Enter" : "Control+Enter");
// Settings start collapsed on a phone: the prompt, the buttons and the output come first.
if (matchMedia("(max-width: 760px)").matches) ui.settings.open = false;

new OutputTools(document, {
  transcript, settings, status,
  cleared: () => {  // the token records and the score described the text that is gone
    tokenView.forget();
    scoreView.hide();
  },
});

// The inspection views: a branch streams like Continue, a score answers at once; a probe is sent
// beside any current request (the state view matches its answer by id).
const tokenView = new TokenView(document, transcript, {
  requestState: () => document.body.dataset.state,
  branch: (position, token) => {
    clearError();
    page.canContinue = false;
    startGenerating("Branching from the state at that token…");
    send("branch", { position, token });
  },
});
const scoreView = new ScoreView(document, transcript, {
  score: (text) => {
    if (document.body.dataset.state !== "ready") return;
    clearError();
    tokenView.forget();
    startGenerating("Scoring the text…");
    send("score", { text });
  },
});
const stateView = new StateView(document, transcript, { probe: (text) => client.request("probe", { text }) });

async function start() {
  setState("loading");
  client.request("saved-list");
  let index;
  try {
    index = await readModelIndex();
  } catch (e) {
    status.showError(`Could not read the model list: ${e.message}`);
    status.set("Error");
    setState("error");
    return;
  }
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted && wanted.includes("/")) {  // a URL (model names have no slash): ?model=https://…/
    const model = { name: wanted, base: wanted };
    if (externalRefused(model)) setState("error");
    else sendLoad({ model });
    return;
  }
  if (wanted && !page.models.some((m) => m.name === wanted)) {
    loadModel(index.default);
    status.showError(`No model named "${wanted}"; loaded ${index.default} instead. `
      + `Available: ${page.models.map((m) => m.name).join(", ")}.`);
    return;
  }
  loadModel(wanted || index.default);
}

start();
