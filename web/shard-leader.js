// A model split across K workers, the first worker's side (the leader: it downloaded and verified
// the whole files, as for one worker). Python lays out each shard's part of the weight files from
// their headers alone (mamba_wasm/shard_bytes.py); here each part's byte ranges are copied out of
// the whole files, so every worker's WASM heap receives only its shard's bytes (1/K of the model),
// this one's too. The others' parts go to the page (shard-load), which hands each to its worker
// (shard-worker.js); they load in parallel with this one. The model is then a ShardGroup
// (mamba_wasm/shard_group.py) whose sums cross a SharedArrayBuffer (reduce-transport.js) on a
// cross-origin isolated page, else MessageChannels (port-transport.js; needs JSPI).

import { LoadedModel } from "./generation.js";
import { canSuspend, meshPorts, PortTransport } from "./port-transport.js";
import { post } from "./protocol.js";
import { ReduceTransport, sharedBufferBytes } from "./reduce-transport.js";
import { toPythonFiles } from "./runtime.js";

const WEIGHTS = /\.safetensors$/;
// While K workers decode they keep every core busy, and each text message the page renders (main
// thread, compositor, raster: ~20% of a core at 14 messages a second in headless Chromium) preempts
// a worker, which stalls all of them at the next exchange. Measured on mamba-130m-shaped, 2 workers
// on 2 cores (shared memory, spinning 3 ms), decode against 1 worker in the same run: flushing
// every 30 ms 1.23x and 1.34x, every 100 ms 1.35x, 1.43x and 1.47x (docs/SHARDING.md); slower
// flushes gained no more and stream in visible chunks.
const SHARDED_FLUSH_MS = 100;

// A LoadedModel whose model is a ShardGroup: releasing it releases the followers' shards too. Over
// MessageChannels a step waits on promises inside Python, so it is entered through callPromising.
export class ShardedLoadedModel extends LoadedModel {
  constructor(name, model, tokenizer, session, suspends) {
    super(name, model, tokenizer, session);
    this.suspends = suspends;
    this.flushMs = SHARDED_FLUSH_MS;
  }

  step(method, ...args) {
    return this.suspends ? method.callPromising(...args) : method(...args);
  }

  release() {
    const release = this.model.release;
    try {
      release();
    } finally {
      release.destroy();
      super.release();
    }
  }
}

// Whether a model's files (file name -> bytes) can be split: safetensors weights (any other format
// loads on the leader alone, the followers idle).
export function splittable(byName) {
  return [...byName.keys()].some((file) => WEIGHTS.test(file));
}

// Bytes of the header (its 8-byte length and the JSON) of a safetensors file, as far as it has bytes.
function headerPart(bytes) {
  if (bytes.length < 8) return bytes;
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return bytes.subarray(0, Math.min(bytes.length, 8 + length));
}

// {weight file name: Uint8Array} of one shard: each CutFile's header, then its ranges of the file.
function cutFiles(layout, byName) {
  const files = [];
  for (const [name, cut] of layout.toJs({ dict_converter: (entries) => [...entries] })) {
    const headerProxy = cut.header;
    const flat = cut.ranges.ravel().tolist();
    const header = headerProxy.toJs();
    const ranges = flat.toJs();
    for (const proxy of [flat, headerProxy, cut]) proxy.destroy();
    let size = header.length;
    for (let i = 1; i < ranges.length; i += 2) size += ranges[i];
    const out = new Uint8Array(size);
    out.set(header);
    const source = byName.get(name);
    let position = header.length;
    for (let i = 0; i < ranges.length; i += 2) {
      out.set(source.subarray(ranges[i], ranges[i] + ranges[i + 1]), position);
      position += ranges[i + 1];
    }
    files.push([name, out]);
  }
  return files;
}

// The transport's pieces for `count` workers: {mine: this worker's transport, forFollower(index):
// the shard-load fields and transferables that give follower `index` its end}.
function makeTransport(config, shardGroup, count) {
  if (self.crossOriginIsolated) {
    const slotFloats = shardGroup.slot_floats(config, count);
    const sab = new SharedArrayBuffer(sharedBufferBytes(count, slotFloats));
    return { mine: new ReduceTransport(sab, count, 0, slotFloats),
      forFollower: () => ({ fields: { sab, slot_floats: slotFloats }, transfer: [] }) };
  }
  if (!canSuspend()) {
    throw new Error("A model split across workers needs a cross-origin isolated page (COOP/COEP headers), "
      + "or a browser with WebAssembly JavaScript Promise Integration (Chromium 137 or later).");
  }
  const ports = meshPorts(count);
  return { mine: new PortTransport(ports[0], count, 0),
    forFollower: (index) => ({ fields: { ports: ports[index] }, transfer: ports[index].filter((p) => p !== null) }) };
}

// The model `name` from byName (file name -> bytes, the tokenizer already taken out; emptied here)
// split across `count` workers; id: the load request's. Returns the Python ShardGroup.
export async function readShardedModel(runtime, name, byName, count, id) {
  const { pyodide } = runtime;
  const shardBytes = pyodide.pyimport("mamba_wasm.shard_bytes");
  const shardGroup = pyodide.pyimport("mamba_wasm.shard_group");
  const loader = pyodide.pyimport("mamba_wasm.shard_loader");
  const configOf = pyodide.pyimport("mamba_wasm.config").config_from_json;
  const heads = new Map();
  for (const [file, bytes] of byName) heads.set(file, WEIGHTS.test(file) ? headerPart(bytes) : bytes);
  const sizes = Object.fromEntries([...byName].filter(([file]) => WEIGHTS.test(file)).map(([f, b]) => [f, b.length]));
  const pyHeads = toPythonFiles(runtime, heads);
  const pySizes = pyodide.toPy(sizes);
  let layouts = null;
  let config = null;
  const proxies = [];
  try {
    layouts = shardBytes.cut_layout(pyHeads, pySizes, name, count);
    config = configOf(new TextDecoder().decode(byName.get("config.json")), `${name}/config.json`);
    const { mine: transport, forFollower } = makeTransport(config, shardGroup, count);
    transport.usePythonMemory(runtime.memory);
    const plain = [...byName].filter(([file]) => !WEIGHTS.test(file));
    const shardFiles = (index) => {
      const layout = layouts.get(index);
      proxies.push(layout);
      return [...plain.map(([f, b]) => [f, b.slice()]), ...cutFiles(layout, byName)];
    };
    for (let index = 1; index < count; index++) {  // the others first: they load while this one does
      const files = shardFiles(index);
      const { fields, transfer } = forFollower(index);
      post(self, "to-page", "shard-load", { id, index, count, name, files, ...fields },
        [...files.map(([, bytes]) => bytes.buffer), ...transfer]);
    }
    const mine = shardFiles(0);
    byName.clear();  // the whole files go: this worker keeps only its part
    return await loadLeader(runtime, { loader, shardGroup, name, files: mine, count, transport });
  } finally {
    for (const proxy of [...proxies, layouts, config, pyHeads, pySizes, configOf, loader, shardGroup, shardBytes]) {
      if (proxy) proxy.destroy();
    }
  }
}

async function loadLeader(runtime, { loader, shardGroup, name, files, count, transport }) {
  const pyFiles = toPythonFiles(runtime, new Map(files));
  files.length = 0;
  let shard = null;
  let link = null;
  try {
    shard = loader.load_shard_from_files.callKwargs(pyFiles, name, 0, count, { precut: true });
    await transport.waitReady();
    link = shardGroup.JsLink(transport);
    return shardGroup.ShardGroup(shard, link);
  } finally {
    for (const proxy of [link, shard, pyFiles]) if (proxy) proxy.destroy();
  }
}
