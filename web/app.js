// The page (main thread): reads the model list, drives the worker, shows what it streams. All
// Python runs in the worker; this module wires the page's parts together (settings.js, status.js,
// transcript.js, own-model.js) and holds the page's state. Everything the model or the network
// provides is inserted with textContent, never as HTML.

import { formatBytes, formatCount } from "./format.js";
import { OwnModelPanel } from "./own-model.js";
import { Settings } from "./settings.js";
import { StatusBar } from "./status.js";
import { Transcript } from "./transcript.js";
import { WorkerClient } from "./worker-client.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), modelInfo: $("model-info"), prompt: $("prompt"),
  generate: $("generate"), stop: $("stop"), cancel: $("cancel"), retry: $("retry"),
  regenerate: $("regenerate"), continue: $("continue"),
  tokenCount: $("token-count"), tokensPerSecond: $("tokens-per-second"),
};
const status = new StatusBar(document);
const settings = new Settings(document);
const transcript = new Transcript(document);

// The page's state, in one place.
const page = {
  current: null,       // the request in flight: {id, type, fields}
  retryAction: null,   // what Retry does after a failed load: that load again, or a reload
  loadedModel: null,   // name of the model the worker holds, once one loaded
  models: [],          // entries of models/index.json
  generationStartedAt: 0,
  lastRun: {},         // figures of the latest generation, from its started and done messages
  lastPrompt: null,    // the latest generation's prompt: Regenerate runs it again (state reused)
  canContinue: false,  // the latest generation was stopped or ran out of tokens: Continue resumes it
};

// ---- state -------------------------------------------------------------------------------------

function setState(state) {
  document.body.dataset.state = state;  // loading | ready | generating | error
  const busy = state === "loading" || state === "generating";
  ui.generate.disabled = state !== "ready";
  ui.stop.disabled = state !== "generating";
  ui.regenerate.disabled = state !== "ready" || page.lastPrompt === null;
  ui.continue.disabled = state !== "ready" || !page.canContinue;
  ui.model.disabled = busy || page.models.length === 0;
  status.progress.hidden = state !== "loading";
  ui.cancel.hidden = !(state === "loading" && page.current && page.current.type === "load");
  ui.retry.hidden = page.retryAction === null || busy;
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

async function readModelIndex() {
  const response = await fetch("models/index.json", { cache: "no-cache" });
  if (!response.ok) throw new Error(`models/index.json: HTTP ${response.status}`);
  const index = await response.json();
  page.models = index.models;
  ui.model.replaceChildren(...page.models.map((m) => {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name;
    option.title = m.description || "";
    return option;
  }));
  return index;
}

function loadModel(name) {
  const entry = page.models.find((m) => m.name === name);
  ui.model.value = name;
  ui.modelInfo.textContent = entry.description || "";
  const base = new URL(`models/${entry.path.replace(/\/?$/, "/")}`, location.href).href;
  sendLoad({ model: { name, base, files: entry.files } });
}

// A model from elsewhere: {name, base} (a folder URL) or {name, local: [File]} (the user's files).
// The worker plans it (model-store.js): sizes and the memory check come before any download.
// Loads start only between requests: a click while loading or generating waits its turn.
function loadExternal(model) {
  if (!["ready", "error"].includes(document.body.dataset.state)) return;
  ui.modelInfo.textContent = "";
  sendLoad({ model });
}

// A load request (also what Retry sends again); Cancel is offered while it runs.
function sendLoad(fields) {
  clearError();
  send("load", fields);
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
    ui.model.value = page.loadedModel;
    status.set(`${what}; still using ${page.loadedModel}.`);
    setState("ready");
  } else {
    status.set(`${what}. Retry, pick another model, or reload the page.`);
    setState("error");
  }
}

// The worker is gone: say so, and offer the one way back, a reload.
function workerDied(message) {
  page.loadedModel = null;
  page.current = null;
  status.showError(message);
  page.retryAction = () => location.reload();
  ui.retry.textContent = "Reload";
  status.set("Error: the worker stopped");
  setState("error");
}

// ---- generation --------------------------------------------------------------------------------

function generate(prompt = ui.prompt.value) {
  if (document.body.dataset.state !== "ready") return;
  clearError();
  const params = settings.read();
  if (params === null) return;
  transcript.start(prompt);
  ui.tokenCount.textContent = "0";
  ui.tokensPerSecond.textContent = "0";
  page.lastPrompt = prompt;
  page.canContinue = false;
  setState("generating");
  status.set("Reading the prompt…");
  page.generationStartedAt = performance.now();
  send("generate", { prompt, params });
}

// The latest prompt again (with the current settings): the worker restores the state it saved
// right after that prompt instead of running the prompt again.
function regenerate() {
  if (page.lastPrompt !== null) generate(page.lastPrompt);
}

// Resume the stopped generation: up to "max new tokens" more, appended to the output. The sampling
// settings are those of the generation it continues (its sampler and seed carry on).
function continueGeneration() {
  if (document.body.dataset.state !== "ready" || !page.canContinue) return;
  clearError();
  const params = settings.read();
  if (params === null) return;
  page.canContinue = false;
  setState("generating");
  status.set("Continuing…");
  page.generationStartedAt = performance.now();
  send("continue", { more_tokens: params.max_new_tokens });
}

function stop() {
  if (page.current && (page.current.type === "generate" || page.current.type === "continue")) {
    client.request("stop", { id: page.current.id });
    status.set("Stopping…");
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
    ui.model.value = page.loadedModel;
    const info = page.models.find((m) => m.name === page.loadedModel);
    const source = msg.source;  // a URL's model: saved in this browser, or why not
    ui.modelInfo.textContent = `${formatCount(msg.model.n_params)} parameters · `
      + `recurrent state ${formatBytes(msg.model.state_nbytes)}`
      + (info && info.description ? ` · ${info.description}` : "")
      + (source.note ? ` · ${source.note}` : "");
    document.body.dataset.modelSource = JSON.stringify(source);  // for tests
    page.canContinue = false;  // a new model has a new session
    status.set(`Ready: ${page.loadedModel} (loaded in ${(msg.elapsed_ms / 1000).toFixed(1)} s)`);
    document.body.dataset.timings = JSON.stringify(msg.timings);  // for tests and benchmarks
    page.current = null;
    setState("ready");
    ui.prompt.focus();
    client.request("saved-list");  // a URL's model was just saved
  }),

  started: forCurrent((msg) => {
    page.lastRun = { n_prompt: msg.n_prompt, prefill_ms: msg.prefill_ms,
      prompt_state_reused: msg.prompt_state_reused, state_nbytes: msg.state_nbytes,
      continued: msg.continued };
    const state = `${formatCount(msg.state_nbytes)} bytes`;
    let prompt = `prompt: ${msg.n_prompt} tokens in ${(msg.prefill_ms / 1000).toFixed(2)} s`;
    if (msg.continued) prompt = `continuing from where it stopped: state kept (${state})`;
    else if (msg.prompt_state_reused) prompt = `state after the prompt reused (${state})`;
    status.set(`Generating… (${prompt})`);
  }),

  token: forCurrent((msg) => {
    transcript.append(msg.text);
    ui.tokenCount.textContent = String(msg.n_generated);
    ui.tokensPerSecond.textContent = msg.tokens_per_second.toFixed(1);
  }),

  done: forCurrent((msg) => {
    transcript.append(msg.text);
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
    setState("ready");
  }),

  error: forCurrent((msg) => {
    status.showError(msg.message);
    if (msg.during === "load") {
      // The worker keeps the model it had; without one, Retry or another model is the way out.
      afterFailedLoad(page.current && page.current.fields, page.loadedModel === null
        ? "Could not load the model" : "Could not load that model");
    } else {
      page.current = null;
      status.set(page.loadedModel ? `Ready: ${page.loadedModel}` : "Error");
      setState(page.loadedModel ? "ready" : "error");
    }
  }),

  cancelled: forCurrent(() => {  // back to the model the page had; Retry only when it had none
    afterFailedLoad(page.current && page.current.fields, "Loading cancelled", page.loadedModel === null);
  }),

  saved: (msg) => ownModel.showSaved(msg),  // answers requests made beside the current one
};

const client = new WorkerClient(handlers, workerDied);
const ownModel = new OwnModelPanel(document, {
  loadExternal,
  deleteSaved: (base) => client.request("saved-delete", { base }),
  showPlan: (text) => { ui.modelInfo.textContent = text; },
});

// ---- wiring ------------------------------------------------------------------------------------

ui.generate.addEventListener("click", () => generate());
ui.stop.addEventListener("click", stop);
ui.regenerate.addEventListener("click", regenerate);
ui.continue.addEventListener("click", continueGeneration);
ui.cancel.addEventListener("click", cancelLoad);
ui.retry.addEventListener("click", () => page.retryAction && page.retryAction());
ui.model.addEventListener("change", () => loadModel(ui.model.value));
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    generate();
  }
});

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
    sendLoad({ model: { name: wanted, base: wanted } });
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
