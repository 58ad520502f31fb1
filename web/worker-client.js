// The page's side of the worker (main thread): starts the module worker, numbers requests, checks
// every message both ways against protocol.js, and learns at once when the worker dies.

import { post, problems } from "./protocol.js";

export class WorkerClient {
  // handlers: {message type: (msg) => void} for messages from the worker; onDeath(reason) once, when
  // the worker is gone (terminated, crashed, or killed by the browser for memory); script: the
  // worker's module (shard-pool.js starts shard-worker.js).
  constructor(handlers, onDeath, script = "worker.js") {
    this.handlers = handlers;
    this.onDeath = onDeath;
    this.nextId = 1;
    this.dead = false;
    // The worker holds a Web Lock named after it for its whole life (worker.js, liveness).
    this.name = `mamba-wasm-worker-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    const url = new URL(script, import.meta.url);
    const kernel = new URLSearchParams(location.search).get("kernel");  // ?kernel=0: no SIMD kernels (kernels.js)
    if (kernel !== null) url.searchParams.set("kernel", kernel);
    this.worker = new Worker(url, { type: "module", name: this.name });
    this.worker.onmessage = (event) => this.receive(event.data);
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.died(`The worker failed: ${event.message || "unknown error"}. Reload the page to start again.`);
    };
  }

  // Send a request; its id.
  request(type, fields = {}) {
    const id = this.nextId++;
    post(this.worker, "to-worker", type, { id, ...fields });
    return id;
  }

  receive(msg) {
    const wrong = problems("to-page", msg);
    if (wrong.length) {
      console.error(`protocol: ${wrong.join("; ")}`);
      return;
    }
    if (msg.type === "alive") {
      if (navigator.locks) navigator.locks.request(this.name, () => this.died());  // granted when it dies
      return;
    }
    this.handlers[msg.type](msg);
  }

  // End the worker on purpose (another worker of the same model died): no death reported.
  terminate() {
    this.dead = true;
    this.worker.terminate();
  }

  died(message = "The worker running Python stopped (the browser may have run out of memory, or it "
    + "crashed). Reload the page to start again.") {
    if (this.dead) return;
    this.dead = true;
    this.onDeath(message);
  }
}
