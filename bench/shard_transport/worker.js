// One benchmark worker: Pyodide + NumPy + mamba_wasm, the whole model or one shard, and the
// transport its shard sums over: a MessageChannel to every peer, or a SharedArrayBuffer + Atomics.
import { loadPyodide } from "/pyodide/pyodide.mjs";

let worker;  // glue.py's BenchWorker (a PyProxy)
let gather;  // (Float32Array, seq) -> Promise<Float32Array[K]> | Float32Array[K], in shard order
let index, count;
let waitedMs = 0;  // time spent in gather: the peers' lag plus the transport

self.onmessage = async (event) => {
  const message = event.data;
  try {
    if (message.type === "init") await init(message);
    else if (message.type === "run") await run(message);
  } catch (error) {
    self.postMessage({ type: "error", message: String((error && error.stack) || error) });
  }
};

async function init(message) {
  const began = performance.now();
  ({ index, count } = message);
  const pyodide = await loadPyodide({ indexURL: "/pyodide/" });
  await pyodide.loadPackage(message.numpyWheel, { messageCallback: () => {}, checkIntegrity: false });
  pyodide.unpackArchive(await (await fetch("/mamba_wasm.zip")).arrayBuffer(), "zip", { extractDir: "/bench" });
  pyodide.runPython("import sys; sys.path.insert(0, '/bench')");
  pyodide.runPython(await (await fetch("/glue.py")).text());
  const runtimeMs = performance.now() - began;

  const dict = pyodide.globals.get("dict")();
  for (const name of ["config.json", "model.safetensors"]) {
    const view = pyodide.toPy(new Uint8Array(await (await fetch(`/model/${name}`)).arrayBuffer()));
    dict.set(name, view);
    view.destroy();
  }
  worker = pyodide.globals.get("BenchWorker")(dict, index, count, message.whole);
  dict.destroy();  // the file bytes go: a shard keeps only its own arrays

  if (message.transport === "channel") gather = channelGather(message.ports);
  else if (message.transport === "sab") gather = sabGather(message.sab, message.slotFloats);
  else gather = (mine) => [mine];
  self.postMessage({
    type: "ready", runtimeMs, readyMs: performance.now() - began, weightsMb: worker.weights_mb,
    heapMb: pyodide._module.HEAP8.length / 1e6,
  });
}

async function run(message) {
  if (message.roundTrips) return roundTrips(message.roundTrips);
  const times = [], ids = [];
  let token = message.first, seq = 0;
  for (let t = 0; t < message.tokens; t++) {
    const began = performance.now();
    if (message.whole) {
      token = worker.whole_step(token);
    } else {
      let partial = worker.start(token);
      while (partial !== undefined) {
        const waitBegan = performance.now();
        const parts = await gather(partial, ++seq);
        waitedMs += performance.now() - waitBegan;
        const total = sumInOrder(parts);
        partial = worker.advance(total);
      }
      const best = worker.best();
      const pairs = await gather(Float32Array.from(best.toJs()), ++seq);
      best.destroy();
      token = bestOf(pairs);
    }
    times.push(performance.now() - began);
    ids.push(token);
  }
  self.postMessage({ type: "done", times, ids, waitedMs });
}

// The transport alone: `n` all-gathers of a d_model-sized partial sum (768 floats), no Python.
async function roundTrips(n) {
  const mine = new Float32Array(768).fill(index);
  const began = performance.now();
  for (let seq = 1; seq <= n; seq++) sumInOrder(await gather(mine, seq));
  self.postMessage({ type: "done", times: [(performance.now() - began) / n], ids: [] });
}

// Shard order, left to right, rounded to float32 after every addition: the same as NumPy's
// float32 sum in sharded.sum_partials, so every worker's replica of u stays identical.
function sumInOrder(parts) {
  if (parts.length === 1) return parts[0];
  const total = new Float32Array(parts[0]);
  for (let k = 1; k < parts.length; k++) {
    const part = parts[k];
    for (let i = 0; i < total.length; i++) total[i] += part[i];
  }
  return total;
}

function bestOf(pairs) {  // [logit, id] per shard; the first shard wins ties, as np.argmax would
  let best = pairs[0];
  for (const pair of pairs) if (pair[0] > best[0]) best = pair;
  return best[1];
}

function channelGather(ports) {
  const inbox = new Map();  // seq -> {parts, received}: a fast peer may be a sum ahead
  let waiting = null;  // {seq, resolve}
  const entry = (seq) => {
    if (!inbox.has(seq)) inbox.set(seq, { parts: new Array(count), received: 0 });
    return inbox.get(seq);
  };
  ports.forEach((port, peer) => {
    if (!port) return;
    port.onmessage = (event) => {
      const { seq, data } = event.data;
      const slot = entry(seq);
      slot.parts[peer] = data;
      slot.received += 1;
      if (waiting && waiting.seq === seq && slot.received === count - 1) waiting.resolve();
    };
  });
  return async (mine, seq) => {
    for (const port of ports) if (port) port.postMessage({ seq, data: mine });
    const slot = entry(seq);
    if (slot.received < count - 1) await new Promise((resolve) => { waiting = { seq, resolve }; });
    waiting = null;
    inbox.delete(seq);
    slot.parts[index] = mine;
    return slot.parts;
  };
}

// Spin a little before sleeping: a peer on another core is usually microseconds away, and a
// futex sleep + wake costs a trip through the scheduler (milliseconds on a busy machine).
const SPINS = Number(new URLSearchParams(self.location.search).get("spins") ?? 20000);

function waitFor(flags, k, seq) {
  for (let spin = 0; spin < SPINS; spin++) if (Atomics.load(flags, k) >= seq) return;
  let seen;
  while ((seen = Atomics.load(flags, k)) < seq) Atomics.wait(flags, k, seen);
}

// Layout: count Int32 flags (the seq each worker last wrote), then two sets (by seq parity) of
// `count` slots of slotFloats floats. A worker can be at most one sum ahead of the slowest, so
// two sets never overwrite a slot that is still being read.
function sabGather(sab, slotFloats) {
  const flags = new Int32Array(sab, 0, count);
  const slot = (parity, k) => new Float32Array(sab, 4 * count + 4 * slotFloats * (parity * count + k), slotFloats);
  const slots = [0, 1].map((parity) => Array.from({ length: count }, (_, k) => slot(parity, k)));
  return (mine, seq) => {
    const mySlots = slots[seq & 1];
    mySlots[index].set(mine);
    Atomics.store(flags, index, seq);
    Atomics.notify(flags, index);
    const parts = [];
    for (let k = 0; k < count; k++) {
      if (k !== index) waitFor(flags, k, seq);
      parts.push(mySlots[k].slice(0, mine.length));
    }
    return parts;
  };
}
