// The transport between the K workers that run one model when the page is NOT cross-origin isolated
// (worker side): a MessageChannel between every two workers, so it works on any static host. A
// message cannot be waited for inside a synchronous call, so allSum and gather return promises, and
// Python blocks on them with pyodide.ffi.run_sync (mamba_wasm/shard_group.py's JsLink): that needs
// JavaScript Promise Integration (WebAssembly.Suspending: Chromium 137+) and a Python call entered
// through callPromising (the leader's generation steps, a follower's commands). The methods are
// reduce-transport.js's, which uses shared memory instead.
//
// Messages between workers (only here, never through the page): {kind: "command", op, args} from
// the leader; {kind: "sum", floats} for every exchange, in the same order on every worker, so each
// peer's messages queue up in order; {kind: "ready"} to the leader once a follower loaded; {kind:
// "abort", index} from a worker that failed.

import { PythonFloats, ShardFailed } from "./reduce-transport.js";

// Whether this browser can suspend WebAssembly on a promise (JSPI), which this transport needs.
export const canSuspend = () => typeof WebAssembly.Suspending === "function";

// A queue whose take() waits for the next put(); fail(error) rejects every take, now and later.
class Inbox {
  constructor() {
    this.items = [];
    this.waiting = [];
    this.error = null;
  }

  put(item) {
    if (this.waiting.length) this.waiting.shift().resolve(item);
    else this.items.push(item);
  }

  take() {
    if (this.error) return Promise.reject(this.error);
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  fail(error) {
    this.error = error;
    for (const { reject } of this.waiting.splice(0)) reject(error);
  }
}

// K workers' channels: ports[i][k], the port worker i holds to worker k (null on
// the diagonal). The leader makes them all and hands each follower its row with its shard.
export function meshPorts(count) {
  const ports = Array.from({ length: count }, () => new Array(count).fill(null));
  for (let i = 0; i < count; i++) {
    for (let k = i + 1; k < count; k++) {
      const channel = new MessageChannel();
      ports[i][k] = channel.port1;
      ports[k][i] = channel.port2;
    }
  }
  return ports;
}

export class PortTransport {
  // ports: this worker's row of meshPorts (ports[k]: to worker k).
  constructor(ports, count, index) {
    this.suspends = true;  // shard_group.JsLink: block on the promises with run_sync
    this.count = count;
    this.index = index;
    this.python = null;  // usePythonMemory
    this.ports = ports;
    this.sums = ports.map(() => new Inbox());  // per peer: its partial sums, in order
    this.commands = new Inbox();
    this.ready = new Inbox();
    this.failure = null;
    ports.forEach((port, k) => {
      if (port === null) return;
      port.onmessage = (event) => this.receive(k, event.data);
    });
  }

  receive(k, msg) {
    if (msg.kind === "sum") this.sums[k].put(msg.floats);
    else if (msg.kind === "command") this.commands.put(msg);
    else if (msg.kind === "ready") this.ready.put(k);
    else if (msg.kind === "abort") this.fail(msg.index);
  }

  fail(index) {
    if (this.failure) return;
    this.failure = new ShardFailed(`Worker ${index + 1} of the ${this.count} that run this model failed, so the model stopped.`);
    for (const inbox of [...this.sums, this.commands, this.ready]) inbox.fail(this.failure);
  }

  peers() {
    return this.ports.map((port, k) => [k, port]).filter(([, port]) => port !== null);
  }

  // Where the partial sums are read and the totals written: this worker's Pyodide's
  // WebAssembly.Memory (runtime.js), once Python has started (before the first exchange).
  usePythonMemory(memory) {
    this.python = new PythonFloats(memory);
  }

  // ---- failure, loading ----------------------------------------------------------------------------

  abort() {
    for (const [, port] of this.peers()) port.postMessage({ kind: "abort", index: this.index });
    this.fail(this.index);
  }

  setReady() {
    this.ports[0].postMessage({ kind: "ready" });
  }

  // Leader: until every follower has loaded its shard.
  async waitReady() {
    for (let k = 1; k < this.count; k++) await this.ready.take();
  }

  // ---- commands (leader -> followers) --------------------------------------------------------------

  // Messages on a port arrive in order: a command never overtakes the one before.
  command(op, args) {
    if (this.failure) throw this.failure;
    const values = Array.from(args);
    for (const [, port] of this.peers()) port.postMessage({ kind: "command", op, args: values });
  }

  // Follower: the next command, {op, args}.
  async nextCommand() {
    const { op, args } = await this.commands.take();
    return { op, args };
  }

  // ---- exchanges ---------------------------------------------------------------------------------

  // The sum over all workers of the `length` floats at `address` in Python's memory, written over
  // them once every peer's has come (a promise), added in shard order, left to right, rounded to
  // float32 at each addition (as reduce-transport.js, so replicas stay identical).
  async allSum(address, length) {
    const own = this.python.at(address, length).slice();
    for (const [, port] of this.peers()) port.postMessage({ kind: "sum", floats: own });
    const parts = await Promise.all(this.sums.map((inbox, k) => (k === this.index ? own : inbox.take())));
    const total = this.python.at(address, length);  // looked up again: the memory may have grown meanwhile
    total.set(parts[0]);
    for (let k = 1; k < this.count; k++) {
      const part = parts[k];
      for (let i = 0; i < length; i++) total[i] += part[i];
    }
  }

  // The leader: a promise of every worker's `length` floats at `address`, as Float32Arrays in shard
  // order; a follower: null (sent).
  gather(address, length) {
    const own = this.python.at(address, length).slice();
    if (this.index !== 0) {
      this.ports[0].postMessage({ kind: "sum", floats: own });
      return null;
    }
    return Promise.all(this.sums.map((inbox, k) => (k === 0 ? own : inbox.take())));
  }
}
