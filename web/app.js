// The page (main thread): reads the model list, drives the worker, shows what it streams.
// All Python runs in worker.js; this file only moves values between the DOM and messages.
// Everything the model or the network provides is inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), modelInfo: $("model-info"), prompt: $("prompt"),
  generate: $("generate"), stop: $("stop"), cancel: $("cancel"), retry: $("retry"),
  regenerate: $("regenerate"), continue: $("continue"),
  status: $("status"), progress: $("progress"), progressText: $("progress-text"),
  error: $("error"), promptEcho: $("prompt-echo"), output: $("output"),
  tokenCount: $("token-count"), tokensPerSecond: $("tokens-per-second"),
};
const PARAMS = [  // [input id, message key, parse, lowest, highest]
  ["max-new-tokens", "max_new_tokens", parseInt, 1, 100000],
  ["temperature", "temperature", parseFloat, 0, 5],
  ["top-k", "top_k", parseInt, 0, Infinity],
  ["top-p", "top_p", parseFloat, 0, 1],
  ["repetition-penalty", "repetition_penalty", parseFloat, 1, 5],
  ["seed", "seed", parseInt, 0, 2 ** 32 - 1],
];

// The worker holds a Web Lock named after it for its whole life (see worker.js, liveness).
const workerName = `mamba-wasm-worker-${Date.now()}-${Math.random().toString(36).slice(2)}`;
const worker = new Worker("worker.js", { name: workerName });
let workerDead = false;
let retryAction = null;   // what Retry does after a failed load: that load again, or a reload
let nextId = 1;
let current = null;       // the request in flight: {id, type}
let loadedModel = null;   // name of the model the worker holds, once one loaded
let models = [];          // entries of models/index.json
let generationStartedAt = 0;
let lastRun = {};         // figures of the latest generation, from its started and done messages
let lastPrompt = null;    // the latest generation's prompt: Regenerate runs it again (state reused)
let canContinue = false;  // the latest generation was stopped or ran out of tokens: Continue resumes it

// ---- state -------------------------------------------------------------------------------------

function setState(state) {
  document.body.dataset.state = state;  // loading | ready | generating | error
  const busy = state === "loading" || state === "generating";
  ui.generate.disabled = state !== "ready";
  ui.stop.disabled = state !== "generating";
  ui.regenerate.disabled = state !== "ready" || lastPrompt === null;
  ui.continue.disabled = state !== "ready" || !canContinue;
  ui.model.disabled = busy || models.length === 0;
  ui.progress.hidden = state !== "loading";
  ui.cancel.hidden = !(state === "loading" && current && current.type === "load");
  ui.retry.hidden = retryAction === null || busy;
}

function setStatus(text) { ui.status.textContent = text; }

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.textContent = "";
  ui.error.hidden = true;
  retryAction = null;
}

function send(type, fields) {
  current = { id: nextId++, type, fields };
  worker.postMessage({ type, id: current.id, ...fields });
  return current.id;
}

// ---- formatting --------------------------------------------------------------------------------

const megabytes = (n) => (n / 1e6).toFixed(1);

function formatBytes(n) {
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}

// ---- models ------------------------------------------------------------------------------------

async function readModelIndex() {
  const response = await fetch("models/index.json", { cache: "no-cache" });
  if (!response.ok) throw new Error(`models/index.json: HTTP ${response.status}`);
  const index = await response.json();
  models = index.models;
  ui.model.replaceChildren(...models.map((m) => {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name;
    option.title = m.description || "";
    return option;
  }));
  return index;
}

function loadModel(name) {
  const entry = models.find((m) => m.name === name);
  ui.model.value = name;
  ui.modelInfo.textContent = entry.description || "";
  const base = new URL(`models/${entry.path.replace(/\/?$/, "/")}`, location.href).href;
  sendLoad({ model: { name, base, files: entry.files } });
}

// A model from elsewhere: {name, base} (a folder URL) or {name, local: [File]} (the user's files).
// The worker plans it (model-store.js): sizes and the memory check come before any download.
function loadExternal(model) {
  ui.modelInfo.textContent = "";
  sendLoad({ model });
}

// A load request (also what Retry sends again); Cancel is offered while it runs.
function sendLoad(fields) {
  clearError();
  send("load", fields);
  setState("loading");
  const name = fields.model.name;
  setStatus(loadedModel === null ? "Loading Python, NumPy and the model…" : `Loading ${name}…`);
  ui.progress.value = 0;
  ui.progressText.textContent = "";
}

function cancelLoad() {
  if (current && current.type === "load") {
    worker.postMessage({ type: "cancel", id: current.id });
    setStatus("Cancelling…");
  }
}

// Back to what the page had before a load that failed or was cancelled; Retry sends it again.
function afterFailedLoad(fields, what, offerRetry = true) {
  current = null;
  retryAction = fields && offerRetry ? () => sendLoad(fields) : null;
  if (loadedModel !== null) {
    ui.model.value = loadedModel;
    setStatus(`${what}; still using ${loadedModel}.`);
    setState("ready");
  } else {
    setStatus(`${what}. Retry, pick another model, or reload the page.`);
    setState("error");
  }
}

// The worker is gone (terminated, crashed, or killed by the browser for memory): say so, and
// offer the one way back, a reload.
function workerDied() {
  if (workerDead) return;
  workerDead = true;
  loadedModel = null;
  current = null;
  showError("The worker running Python stopped (the browser may have run out of memory, or it "
    + "crashed). Reload the page to start again.");
  retryAction = () => location.reload();
  ui.retry.textContent = "Reload";
  setStatus("Error: the worker stopped");
  setState("error");
}

// ---- generation --------------------------------------------------------------------------------

function readParams() {
  const params = {};
  for (const [id, key, parse, lowest, highest] of PARAMS) {
    const input = $(id);
    const value = parse(input.value, 10);
    if (!Number.isFinite(value) || value < lowest || value > highest) {
      const range = highest === Infinity ? `at least ${lowest}` : `between ${lowest} and ${highest}`;
      throw new Error(`${input.closest("label").textContent.trim()} must be a number ${range}.`);
    }
    params[key] = value;
  }
  return params;
}

// The parameters, or null after showing why one of them is invalid.
function paramsOrShowError() {
  try {
    return readParams();
  } catch (e) {
    showError(e.message);
    return null;
  }
}

function generate(prompt = ui.prompt.value) {
  if (document.body.dataset.state !== "ready") return;
  clearError();
  const params = paramsOrShowError();
  if (params === null) return;
  ui.promptEcho.textContent = prompt;
  ui.output.textContent = "";
  ui.tokenCount.textContent = "0";
  ui.tokensPerSecond.textContent = "0";
  lastPrompt = prompt;
  canContinue = false;
  setState("generating");
  setStatus("Reading the prompt…");
  generationStartedAt = performance.now();
  send("generate", { prompt, params });
}

// The latest prompt again (with the current settings): the worker restores the state it saved
// right after that prompt instead of running the prompt again.
function regenerate() {
  if (lastPrompt !== null) generate(lastPrompt);
}

// Resume the stopped generation: up to "max new tokens" more, appended to the output. The sampling
// settings are those of the generation it continues (its sampler and seed carry on).
function continueGeneration() {
  if (document.body.dataset.state !== "ready" || !canContinue) return;
  clearError();
  const params = paramsOrShowError();
  if (params === null) return;
  canContinue = false;
  setState("generating");
  setStatus("Continuing…");
  generationStartedAt = performance.now();
  send("continue", { more_tokens: params.max_new_tokens });
}

function stop() {
  if (current && (current.type === "generate" || current.type === "continue")) {
    worker.postMessage({ type: "stop", id: current.id });
    setStatus("Stopping…");
  }
}

// ---- messages from the worker ------------------------------------------------------------------

const handlers = {
  progress(msg) {
    setStatus(msg.text);
    if (msg.total > 0) {
      ui.progress.max = msg.total;
      ui.progress.value = msg.loaded;
      ui.progressText.textContent = `${megabytes(msg.loaded)} of ${megabytes(msg.total)} MB`;
    } else {
      ui.progress.removeAttribute("value");  // indeterminate while Python starts
      ui.progressText.textContent = "";
    }
  },

  ready(msg) {
    loadedModel = msg.model.name;
    ui.model.value = loadedModel;
    const info = models.find((m) => m.name === loadedModel);
    const source = msg.source || {};  // a URL's model: saved in this browser, or why not
    ui.modelInfo.textContent = `${msg.model.n_params.toLocaleString("en")} parameters · `
      + `recurrent state ${formatBytes(msg.model.state_nbytes)}`
      + (info && info.description ? ` · ${info.description}` : "")
      + (source.note ? ` · ${source.note}` : "");
    document.body.dataset.modelSource = JSON.stringify(source);  // for tests
    canContinue = false;  // a new model has a new session
    setStatus(`Ready: ${loadedModel} (loaded in ${(msg.elapsed_ms / 1000).toFixed(1)} s)`);
    document.body.dataset.timings = JSON.stringify(msg.timings);  // for tests and benchmarks
    current = null;
    setState("ready");
    ui.prompt.focus();
  },

  started(msg) {
    lastRun = { n_prompt: msg.n_prompt, prefill_ms: msg.prefill_ms,
      prompt_state_reused: msg.prompt_state_reused, state_nbytes: msg.state_nbytes,
      continued: msg.continued };
    const state = `${msg.state_nbytes.toLocaleString("en")} bytes`;
    let prompt = `prompt: ${msg.n_prompt} tokens in ${(msg.prefill_ms / 1000).toFixed(2)} s`;
    if (msg.continued) prompt = `continuing from where it stopped: state kept (${state})`;
    else if (msg.prompt_state_reused) prompt = `state after the prompt reused (${state})`;
    setStatus(`Generating… (${prompt})`);
  },

  token(msg) {
    ui.output.append(msg.text);  // a Text node: never parsed as HTML
    ui.tokenCount.textContent = String(msg.n_generated);
    ui.tokensPerSecond.textContent = msg.tokens_per_second.toFixed(1);
  },

  done(msg) {
    if (msg.text) ui.output.append(msg.text);
    ui.tokenCount.textContent = String(msg.n_generated);
    ui.tokensPerSecond.textContent = msg.tokens_per_second.toFixed(1);
    Object.assign(lastRun, { reason: msg.reason, n_generated: msg.n_generated,
      tokens_per_second: msg.tokens_per_second, tokens_after_stop: msg.tokens_after_stop,
      wasm_heap_bytes: msg.wasm_heap_bytes, python_objects: msg.python_objects });
    document.body.dataset.lastRun = JSON.stringify(lastRun);  // for tests and benchmarks
    const why = { stopped: "stopped", length: "reached max new tokens", eos: "end of text" };
    const seconds = ((performance.now() - generationStartedAt) / 1000).toFixed(1);
    canContinue = msg.reason === "stopped" || msg.reason === "length";
    setStatus(`Done (${why[msg.reason] || msg.reason}): ${msg.n_generated} tokens in ${seconds} s`);
    current = null;
    setState("ready");
  },

  error(msg) {
    showError(msg.message);
    if (msg.during === "load") {
      // The worker keeps the model it had; without one, Retry or another model is the way out.
      afterFailedLoad(current && current.fields, loadedModel === null ? "Could not load the model"
        : "Could not load that model");
    } else {
      current = null;
      setStatus(loadedModel ? `Ready: ${loadedModel}` : "Error");
      setState(loadedModel ? "ready" : "error");
    }
  },

  cancelled() {  // back to the model the page had; Retry only when it had none
    afterFailedLoad(current && current.fields, "Loading cancelled", loadedModel === null);
  },

  alive() {
    if (navigator.locks) navigator.locks.request(workerName, workerDied);  // granted when it dies
  },
};

worker.onmessage = (event) => {
  const msg = event.data;
  const handler = handlers[msg.type];
  if (!handler) {
    console.warn("unknown message from worker", msg);
    return;
  }
  if (msg.id !== undefined && current && msg.id !== current.id && msg.type !== "progress"
    && msg.type !== "saved") return;  // `saved` answers requests made beside the current one
  handler(msg);
};

worker.onerror = (event) => {
  event.preventDefault();
  workerDied();
  showError(`The worker failed: ${event.message || "unknown error"}. Reload the page to start again.`);
};

// ---- wiring ------------------------------------------------------------------------------------

ui.generate.addEventListener("click", () => generate());
ui.stop.addEventListener("click", stop);
ui.regenerate.addEventListener("click", regenerate);
ui.continue.addEventListener("click", continueGeneration);
ui.cancel.addEventListener("click", cancelLoad);
ui.retry.addEventListener("click", () => retryAction && retryAction());
ui.model.addEventListener("change", () => loadModel(ui.model.value));
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    generate();
  }
});

async function start() {
  setState("loading");
  let index;
  try {
    index = await readModelIndex();
  } catch (e) {
    showError(`Could not read the model list: ${e.message}`);
    setStatus("Error");
    setState("error");
    return;
  }
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted && wanted.includes("/")) {  // a URL (model names have no slash): ?model=https://…/
    loadExternal({ name: wanted, base: wanted });
    return;
  }
  if (wanted && !models.some((m) => m.name === wanted)) {
    loadModel(index.default);
    showError(`No model named "${wanted}"; loaded ${index.default} instead. `
      + `Available: ${models.map((m) => m.name).join(", ")}.`);
    return;
  }
  loadModel(wanted || index.default);
}

start();
