// Starts K workers (?workers=K&transport=none|channel|sab&whole=0|1&tokens=N), connects them,
// runs greedy decoding and leaves the timings in window.benchResult.
const query = new URLSearchParams(location.search);
const count = Number(query.get("workers"));
const transport = query.get("transport");
const whole = query.get("whole") === "1";
const tokens = Number(query.get("tokens"));
const numpyWheel = `/${query.get("numpy")}`;  // its real file name: loadPackage reads the name from it
const SLOT_FLOATS = 4096;  // >= d_model and r + 2n: one partial sum of one token

function reply(worker, type) {
  return new Promise((resolve, reject) => {
    worker.addEventListener("message", (event) => {
      if (event.data.type === type) resolve(event.data);
      else if (event.data.type === "error") reject(new Error(event.data.message));
    });
    worker.addEventListener("error", (event) => reject(new Error(event.message)));
  });
}

async function main() {
  const began = performance.now();
  const workers = Array.from({ length: count }, () => new Worker(`/worker.js?spins=${query.get("spins") ?? 20000}`, { type: "module" }));
  const ports = workers.map(() => new Array(count).fill(null));
  if (transport === "channel") {
    for (let i = 0; i < count; i++) {
      for (let j = i + 1; j < count; j++) {
        const channel = new MessageChannel();
        ports[i][j] = channel.port1;
        ports[j][i] = channel.port2;
      }
    }
  }
  const sab = transport === "sab" ? new SharedArrayBuffer(4 * count + 4 * SLOT_FLOATS * 2 * count) : null;
  const ready = workers.map((worker) => reply(worker, "ready"));
  workers.forEach((worker, index) => {
    const mine = ports[index];
    worker.postMessage({ type: "init", index, count, whole, transport, numpyWheel, ports: mine, sab, slotFloats: SLOT_FLOATS },
      mine.filter((port) => port));
  });
  const readies = await Promise.all(ready);
  const readyMs = performance.now() - began;
  const done = workers.map((worker) => reply(worker, "done"));
  workers.forEach((worker) => worker.postMessage({ type: "run", tokens, first: 1, whole, roundTrips: Number(query.get("roundTrips") ?? 0) }));
  const results = await Promise.all(done);
  window.benchResult = { crossOriginIsolated: self.crossOriginIsolated, readyMs, readies, results };
}

main().catch((error) => { window.benchResult = { error: String(error.stack || error) }; });
