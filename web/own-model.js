// The "Your own model" panel (main thread, after app.js, whose globals it uses): a folder URL,
// files from this device (chosen or dropped; read by the worker, never uploaded), and the models
// saved in this browser, each with its size, a Load and a Delete button.
// The worker does the work (model-store.js); this file only turns clicks into messages and
// messages into text, with textContent throughout.
"use strict";

const own = {
  url: $("model-url"), loadUrl: $("load-url"), files: $("model-files"), panel: $("own-model"),
  saved: $("cached-models"),
};

// Loads start only between requests: a click while loading or generating waits its turn.
const idle = () => ["ready", "error"].includes(document.body.dataset.state);

function loadUrl(text) {
  const url = text.trim();
  if (!url || !idle()) return;
  loadExternal({ name: url, base: url });
}

function loadFiles(fileList) {
  const files = Array.from(fileList);
  if (files.length === 0 || !idle()) return;
  loadExternal({ name: files.length === 1 ? files[0].name : `${files.length} files`, local: files });
}

function askSaved(type, fields = {}) {
  worker.postMessage({ type, id: nextId++, ...fields });
}

function describePlan(plan) {
  const params = plan.n_params_estimate
    ? `about ${plan.n_params_estimate.toLocaleString("en")} parameters, ` : "";
  const files = plan.files.map((f) => `${f.name} ${formatBytes(f.size)}`).join(", ");
  let fetching = `${formatBytes(plan.download_bytes)} to download`;
  if (plan.kind === "files") fetching = `${formatBytes(plan.total_bytes)} to read from your files`;
  else if (plan.saved) fetching = `${formatBytes(plan.total_bytes)} saved in this browser, nothing to download`;
  return `${plan.name}: ${fetching} (${files}); ${params}${formatBytes(plan.float32_bytes)} as float32`;
}

handlers.plan = (msg) => {
  ui.modelInfo.textContent = describePlan(msg.plan);
  document.body.dataset.modelPlan = JSON.stringify(msg.plan);  // for tests
};

handlers.saved = (msg) => {
  if (msg.message) console.warn(`saved models: ${msg.message}`);
  own.saved.replaceChildren(...msg.models.map((entry) => {
    const item = document.createElement("li");
    item.dataset.base = entry.base;
    const label = document.createElement("span");
    label.className = "saved-name";
    label.textContent = `${entry.name} · ${formatBytes(entry.bytes)}`;
    label.title = entry.base;
    const load = document.createElement("button");
    load.textContent = "Load";
    load.dataset.testid = "cached-load";
    load.addEventListener("click", () => loadUrl(entry.base));
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.dataset.testid = "cached-delete";
    remove.addEventListener("click", () => askSaved("saved-delete", { base: entry.base }));
    item.append(label, load, remove);
    return item;
  }));
  own.saved.dataset.count = String(msg.models.length);
  if (msg.models.length === 0) {
    const none = document.createElement("li");
    none.className = "saved-none";
    none.textContent = "None yet: a model loaded from a URL is saved here.";
    own.saved.append(none);
  }
};

const showReady = handlers.ready;  // app.js's; then refresh the list (a URL's model was just saved)
handlers.ready = (msg) => {
  showReady(msg);
  askSaved("saved-list");
};

own.loadUrl.addEventListener("click", () => loadUrl(own.url.value));
own.url.addEventListener("keydown", (event) => {
  if (event.key === "Enter") loadUrl(own.url.value);
});
own.files.addEventListener("change", () => {
  loadFiles(own.files.files);
  own.files.value = "";  // the same files again can be chosen again
});
own.panel.addEventListener("dragover", (event) => {
  event.preventDefault();
  own.panel.classList.add("dropping");
});
own.panel.addEventListener("dragleave", () => own.panel.classList.remove("dropping"));
own.panel.addEventListener("drop", (event) => {
  event.preventDefault();
  own.panel.classList.remove("dropping");
  loadFiles(event.dataTransfer.files);
});

askSaved("saved-list");
