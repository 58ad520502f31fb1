// The "Your own model" panel (main thread): a folder URL, files from this device (chosen or
// dropped; read by the worker, never uploaded), and the models saved in this browser, each with
// its size, a Load and a Delete button. It turns clicks into calls of `actions` and the worker's
// `plan` and `saved` messages into text, with textContent throughout.

import { formatBytes } from "./format.js";

function describePlan(plan) {
  const d = plan.description;
  const params = `${d.architecture}, ${d.n_params.toLocaleString("en")} parameters`;
  const files = plan.files.map((f) => `${f.name} ${formatBytes(f.size)}`).join(", ");
  let fetching = `${formatBytes(plan.download_bytes)} to download`;
  if (plan.kind === "files") fetching = `${formatBytes(plan.total_bytes)} to read from your files`;
  else if (plan.saved) fetching = `${formatBytes(plan.total_bytes)} saved in this browser, nothing to download`;
  if (plan.format === "gguf") {
    const memory = plan.weight_bytes < d.float32_bytes
      ? `${formatBytes(plan.weight_bytes)} in memory (its ${plan.quantization} matrices kept as they are; `
        + `${formatBytes(d.float32_bytes)} as float32)`
      : `${formatBytes(d.float32_bytes)} in memory as float32 after dequantisation`;
    return `${plan.name}: GGUF file, ${plan.quantization}, ${fetching}; ${params}, ${memory}`;
  }
  return `${plan.name}: ${fetching} (${files}); ${params}, ${formatBytes(d.float32_bytes)} as float32`;
}

export class OwnModelPanel {
  // actions: {loadExternal(model), listSaved(), deleteSaved(base), showPlan(text)}
  constructor(root, actions) {
    this.actions = actions;
    this.url = root.getElementById("model-url");
    this.files = root.getElementById("model-files");
    this.panel = root.getElementById("own-model");
    this.saved = root.getElementById("cached-models");
    root.getElementById("load-url").addEventListener("click", () => this.loadUrl(this.url.value));
    this.url.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.loadUrl(this.url.value);
    });
    this.files.addEventListener("change", () => {
      this.loadFiles(this.files.files);
      this.files.value = "";  // the same files again can be chosen again
    });
    this.panel.addEventListener("dragover", (event) => {
      event.preventDefault();
      this.panel.classList.add("dropping");
    });
    this.panel.addEventListener("dragleave", () => this.panel.classList.remove("dropping"));
    this.panel.addEventListener("drop", (event) => {
      event.preventDefault();
      this.panel.classList.remove("dropping");
      this.loadFiles(event.dataTransfer.files);
    });
  }

  loadUrl(text) {
    const url = text.trim();
    if (url) this.actions.loadExternal({ name: url, base: url });
  }

  loadFiles(fileList) {
    const files = Array.from(fileList);
    if (files.length === 0) return;
    this.actions.loadExternal({ name: files.length === 1 ? files[0].name : `${files.length} files`,
      local: files });
  }

  // The worker's plan of a model it is about to fetch.
  showPlan(msg) {
    this.actions.showPlan(describePlan(msg.plan));
    document.body.dataset.modelPlan = JSON.stringify(msg.plan);  // for tests
  }

  // The worker's list of saved models.
  showSaved(msg) {
    if (msg.message) console.warn(`saved models: ${msg.message}`);
    this.saved.replaceChildren(...msg.models.map((entry) => {
      const item = document.createElement("li");
      item.dataset.base = entry.base;
      const label = document.createElement("span");
      label.className = "saved-name";
      const url = new URL(entry.base);  // two saved models of one name differ by where they are from
      label.textContent = `${entry.name} · ${formatBytes(entry.bytes)} · ${url.host}${url.pathname}`;
      label.title = entry.base;
      const load = document.createElement("button");
      load.textContent = "Load";
      load.dataset.testid = "cached-load";
      load.addEventListener("click", () => this.loadUrl(entry.base));
      const remove = document.createElement("button");
      remove.textContent = "Delete";
      remove.dataset.testid = "cached-delete";
      remove.addEventListener("click", () => this.actions.deleteSaved(entry.base));
      item.append(label, load, remove);
      return item;
    }));
    this.saved.dataset.count = String(msg.models.length);
    if (msg.models.length === 0) {
      const none = document.createElement("li");
      none.className = "saved-none";
      none.textContent = "None yet: a model loaded from a URL is saved here.";
      this.saved.append(none);
    }
  }
}
