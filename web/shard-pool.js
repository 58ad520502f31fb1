// The page's side of a model split across K workers (main thread): how many workers (?workers=N,
// else the Workers setting, else a default from the cores), the K - 1 follower workers
// (shard-worker.js) beside the page's worker (the leader), the shard-load messages the leader
// sends them through the page, and their liveness: one worker dying takes the whole model down.
// With one worker nothing here runs and the page works as it always did.

import { canSuspend } from "./port-transport.js";
import { post } from "./protocol.js";
import { WorkerClient } from "./worker-client.js";

export const MAX_WORKERS = 8;
const STORAGE_KEY = "mamba-wasm-workers-v1";

// The default: several workers only where they win. Their partial sums cross between workers
// 1 + 2 * n_layer times a token; through shared memory (a cross-origin isolated page) 2 workers
// decoded mamba-130m 1.35-1.47x faster than one on 2 idle cores with the SIMD kernels
// (docs/SHARDING.md), through MessageChannels 0.80-0.94x, so without isolation the default is 1
// (more only when asked for: a model too large for one heap says how). On 2 cores the browser's
// own threads take a share: 1 there too; from 4 cores, half of them, up to 4.
export function defaultWorkers(hardware, isolated) {
  if (!isolated || !(hardware >= 4)) return 1;
  return Math.min(4, Math.floor(hardware / 2));
}

// A worker count written plainly, 1..MAX_WORKERS, or null.
function parseCount(text) {
  if (typeof text !== "string" || !/^\d+$/.test(text.trim())) return null;
  const n = Number(text.trim());
  return n >= 1 && n <= MAX_WORKERS ? n : null;
}

// {count, note}: the workers this page runs, and why when it is not what was asked.
// suspends: the browser has JSPI, which the MessageChannel transport needs (port-transport.js).
export function chooseWorkers({ query, stored, hardware, isolated, suspends }) {
  const fromQuery = query === null ? null : parseCount(query);
  const fromSetting = parseCount(stored ?? "");
  let note = "";
  if (query !== null && fromQuery === null) {
    note = `?workers=${query} is not a whole number from 1 to ${MAX_WORKERS}: ignored. `;
  }
  const wanted = fromQuery ?? fromSetting ?? defaultWorkers(hardware, isolated);
  if (wanted > 1 && !isolated && suspends) {
    return { count: wanted, note: `${note}Not cross-origin isolated: the workers send their sums over MessageChannels `
      + "(slower than shared memory: `python3 build.py serve --isolated`). " };
  }
  if (wanted > 1 && !isolated) {
    return { count: 1, note: `${note}${wanted} workers asked for, but this page is not cross-origin isolated `
      + "(no COOP/COEP headers), so the workers could not share memory, and this browser cannot wait for "
      + "a message inside Python (no WebAssembly JavaScript Promise Integration): using 1. Serve the site "
      + "with `python3 build.py serve --isolated` to split the model." };
  }
  return { count: wanted, note };
}

export class ShardPool {
  // root: the document (the Workers setting); onDeath(message): once, when a follower is gone or
  // failed (the pool has already stopped every follower).
  constructor(root, onDeath) {
    this.onDeath = onDeath;
    this.down = false;
    this.heaps = {};  // follower index -> its WASM heap bytes once its shard loaded
    const search = new URLSearchParams(location.search);
    const query = search.get("workers");
    // A test's knob: ?worker_weight_limit=BYTES lowers (never raises: model-store.js) the float32
    // weights one worker may hold, so a small model takes the over-the-limit path.
    const limit = Number(search.get("worker_weight_limit"));
    this.weightLimit = Number.isInteger(limit) && limit > 0 ? limit : null;
    let stored = null;
    try {
      stored = localStorage.getItem(STORAGE_KEY);
    } catch {
      // storage disabled: the default
    }
    const { count, note } = chooseWorkers({ query, stored, hardware: navigator.hardwareConcurrency,
      isolated: self.crossOriginIsolated, suspends: canSuspend() });
    this.count = count;
    this.showSetting(root, count, note);
    this.followers = Array.from({ length: count - 1 }, (_, i) => new WorkerClient({
      "shard-ready": (msg) => this.ready(msg),
      "shard-error": (msg) => this.died(`Worker ${msg.index + 1} of ${count} could not run its part of the `
        + `model: ${msg.message} Reload the page to start again.`),
    }, (reason) => this.died(`Worker ${i + 2} of ${count}: ${reason}`), "shard-worker.js"));
  }

  showSetting(root, count, note) {
    const input = root.getElementById("workers");
    const text = root.getElementById("workers-note");
    input.value = String(count);
    document.body.dataset.workers = String(count);  // for tests and benchmarks
    text.textContent = `${note}${count === 1 ? "1 worker" : `${count} workers, each holding 1/${count} of the model`}`
      + ` (this device has ${navigator.hardwareConcurrency || "?"} cores). A change applies when the page reloads.`;
    input.addEventListener("change", () => {
      const n = parseCount(input.value);
      input.setAttribute("aria-invalid", String(n === null));
      if (n === null) return;
      try {
        localStorage.setItem(STORAGE_KEY, String(n));
      } catch {
        // storage disabled: the setting is not kept
      }
    });
  }

  // A load request's fields, with the worker count when the model is split (and the test's limit).
  loadFields(fields) {
    const limited = this.weightLimit === null ? fields : { ...fields, worker_weight_limit: this.weightLimit };
    return this.count > 1 ? { ...limited, workers: this.count } : limited;
  }

  // The leader's shard-load for follower msg.index: passed on, its buffers moved, not copied.
  forward(msg) {
    const { type, ...fields } = msg;
    const follower = this.followers[msg.index - 1];
    post(follower.worker, "to-worker", type, fields, [...msg.files.map(([, bytes]) => bytes.buffer),
      ...(msg.ports ?? []).filter((port) => port !== null)]);
  }

  ready(msg) {
    this.heaps[msg.index] = msg.heap_bytes;
    document.body.dataset.shardHeaps = JSON.stringify(this.heaps);  // for tests and benchmarks
  }

  died(message) {
    if (this.down) return;
    this.terminate();
    this.onDeath(message);
  }

  // Stop every follower (the leader died, or one of them did).
  terminate() {
    this.down = true;
    for (const follower of this.followers) follower.terminate();
  }
}
