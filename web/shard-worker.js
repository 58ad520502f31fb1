// A follower (a module worker): one shard of a model split across K workers. It starts Python at
// once (in parallel with the leader's download), then, for each shard-load the page hands it (the
// leader's cut of the files: only this shard's bytes), loads its shard and does what the leader's
// commands say (mamba_wasm/shard_group.py's ShardFollower) until the leader releases it. Between
// commands it waits without blocking (Atomics.waitAsync, or a port's message), so the next model's
// shard-load can arrive while it still serves the current one. Every message is listed in protocol.js.

import { fetchManifest, fetchVerified } from "./downloads.js";
import { PortTransport } from "./port-transport.js";
import { post, problems } from "./protocol.js";
import { ReduceTransport } from "./reduce-transport.js";
import { describeError, heapBytes, runtimeFiles, startRuntime, toPythonFiles } from "./runtime.js";

const send = (type, fields, transfer) => post(self, "to-page", type, fields, transfer);

// Liveness, as worker.js: the page waits on a Web Lock this worker holds for its whole life.
if (self.name && self.navigator && navigator.locks) {
  navigator.locks.request(self.name, () => {
    send("alive");
    return new Promise(() => {});
  });
}

async function startFollowerRuntime() {
  const manifest = await fetchManifest();
  // Python starts while the rest downloads.
  const fileOf = runtimeFiles((path) => fetchVerified(manifest, path, () => {}, undefined));
  // Without shared memory (no cross-origin isolation) it waits on the others' messages (port-transport.js).
  return startRuntime(manifest, fileOf, () => {}, () => {}, { suspends: !self.crossOriginIsolated });
}

const runtimeStarted = startFollowerRuntime();

// Load this worker's shard from msg.files, tell the leader (the shared buffer) and the page, then
// follow the leader's commands until it releases the shard.
async function follow(msg) {
  const transport = msg.sab ? new ReduceTransport(msg.sab, msg.count, msg.index, msg.slot_floats)
    : new PortTransport(msg.ports, msg.count, msg.index);
  let runtime = null;
  const proxies = [];
  try {
    runtime = await runtimeStarted;
    const { pyodide } = runtime;
    transport.usePythonMemory(runtime.memory);
    const loader = pyodide.pyimport("mamba_wasm.shard_loader");
    const shardGroup = pyodide.pyimport("mamba_wasm.shard_group");
    proxies.push(loader, shardGroup);
    const pyFiles = toPythonFiles(runtime, new Map(msg.files));
    msg.files.length = 0;
    proxies.push(pyFiles);
    const shard = loader.load_shard_from_files.callKwargs(pyFiles, msg.name, msg.index, msg.count, { precut: true });
    proxies.push(shard);
    const link = shardGroup.JsLink(transport);
    proxies.push(link);
    const follower = shardGroup.ShardFollower(shard, link);
    proxies.push(follower);
    const execute = follower.execute;
    proxies.push(execute);
    transport.setReady();
    send("shard-ready", { id: msg.id, index: msg.index, heap_bytes: heapBytes(runtime), weights_bytes: shard.nbytes });
    for (;;) {
      const { op, args } = await transport.nextCommand();
      const pyArgs = pyodide.toPy(args);
      try {
        // over MessageChannels a step blocks on promises (run_sync): entered through callPromising
        if (!(transport.suspends ? await execute.callPromising(op, pyArgs) : execute(op, pyArgs))) break;
      } finally {
        pyArgs.destroy();
      }
    }
  } catch (error) {
    transport.abort();
    console.error(error);
    send("shard-error", { id: msg.id, index: msg.index, message: describeError(runtime, error) });
  } finally {
    for (const proxy of proxies.reverse()) proxy.destroy();
  }
}

self.onmessage = (event) => {
  const msg = event.data;
  const wrong = problems("to-worker", msg);
  if (wrong.length || msg.type !== "shard-load") {  // a page out of step with this worker: the model is down
    send("shard-error", { id: typeof msg.id === "number" ? msg.id : -1, index: Number(msg.index) || 0,
      message: `Protocol error: ${wrong.join("; ") || `${msg.type} is not for a follower`}` });
    return;
  }
  follow(msg);
};
