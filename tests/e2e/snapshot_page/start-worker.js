// A test worker for web/snapshot-start.js: starts Python through it (from the site's own files),
// then loads the demo model and generates with a fixed seed, and reports which start it took,
// its timings and the text. `damage` first spoils the saved snapshot ("truncate" | "flip" |
// "garbage" | "bases").
// bench/startup.py also runs it with `bare: true`: Pyodide's plain loadPyodide() + loadPackage
// ("numpy") + `import numpy`, the yardstick for a start; `noSnapshot: true` (no cache given to
// startPython); and `generate: false` (time to ready only).
import { snapshotKey, startPython } from "./snapshot-start.js";

const CACHE_NAME = "mamba-wasm-v1";
const MODEL = "models/shakespeare/";

async function bytesOf(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// A well-formed entry (its sha256 redone) whose first library is reloaded 16 table slots off: the
// restored heap then calls the wrong functions, the case of a heap that does not answer.
async function misplaceLibrary(bytes) {
  const view = new DataView(bytes.buffer);
  const length = view.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(40, 40 + length)));
  header.libs[0].tableBase += 16;
  const json = new TextEncoder().encode(JSON.stringify(header));
  bytes.fill(0x20, 40, 40 + length);
  bytes.set(json, 40);
  bytes.set(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes.subarray(40))), 8);
}

async function damageEntry(cache, key, how) {
  const entry = await cache.match(key);
  if (!entry) throw new Error("no snapshot to damage");
  let bytes = new Uint8Array(await entry.arrayBuffer());
  if (how === "truncate") bytes = bytes.slice(0, bytes.length >> 1);
  if (how === "flip") bytes[bytes.length >> 1] ^= 0xff;
  if (how === "garbage") bytes = new Uint8Array(1000).fill(7);
  if (how === "bases") await misplaceLibrary(bytes);
  await cache.put(key, new Response(bytes));
}

async function bareStart() {
  const began = performance.now();
  const { loadPyodide } = await import("./pyodide/pyodide.mjs");
  const pyodide = await loadPyodide({ indexURL: new URL("pyodide/", self.location.href).href });
  const python = performance.now() - began;
  await pyodide.loadPackage("numpy", { messageCallback: () => {} });
  pyodide.runPython("import numpy");
  const readyMs = performance.now() - began;
  return { start: "bare", readyMs, timings: { python_ms: python, numpy_ms: readyMs - python } };
}

async function run({ damage, prompt, seed, bare, noSnapshot, generate = true }) {
  if (bare) return bareStart();
  const began = performance.now();
  const manifest = await (await fetch("manifest.json", { cache: "no-cache" })).json();
  const sha = (path) => manifest.files[path].sha256;
  const cache = self.caches && !noSnapshot ? await caches.open(CACHE_NAME) : null;
  // Keyed at the origin's root, so that the test of a new build (the page mounted under another
  // path, with another manifest) shares the old build's keys, as one site does.
  const key = snapshotKey(self.location.origin, {
    asm: sha("pyodide/pyodide.asm.js"), wasm: sha("pyodide/pyodide.asm.wasm"),
    stdlib: sha("pyodide/python_stdlib.zip"), numpy: sha(manifest.numpy), package: sha(manifest.package) });
  if (damage) await damageEntry(cache, key, damage);
  const { loadPyodide } = await import("./pyodide/pyodide.mjs");
  await import("./pyodide/pyodide.asm.js");  // defines _createPyodideModule
  const timings = {};
  let lapStart = performance.now();
  const lap = (name) => {
    const now = performance.now();
    timings[name] = now - lapStart;
    lapStart = now;
  };
  const started = await startPython({
    loadPyodide, cache, key, lap,
    options: { indexURL: new URL("pyodide/", self.location.href).href },
    wheels: () => Promise.all([bytesOf(manifest.numpy), bytesOf(manifest.package)]),
    imports: "import numpy, mamba_wasm",
    check: "import numpy, mamba_wasm\nfloat(numpy.ones(3, numpy.float32) @ numpy.ones(3, numpy.float32)) == 3.0",
  });
  const readyMs = performance.now() - began;
  const { pyodide } = started;
  if (!generate) {
    const saving = await started.saving;
    return { start: started.start, note: started.note, timings, readyMs, saving };
  }
  pyodide.FS.mkdirTree("/tmp/model");
  for (const file of ["config.json", "model.safetensors", "tokenizer.json"]) {
    pyodide.FS.writeFile(`/tmp/model/${file}`, await bytesOf(MODEL + file));
  }
  pyodide.globals.set("prompt", prompt);
  pyodide.globals.set("seed", seed);
  const text = pyodide.runPython(`
import mamba_wasm
model = mamba_wasm.load_model("/tmp/model")
tokenizer = mamba_wasm.Tokenizer.from_file("/tmp/model/tokenizer.json")
"".join(mamba_wasm.generate(model, tokenizer, prompt, 40, temperature=0.8, seed=seed))`);
  const saving = await started.saving;
  const keys = cache ? (await cache.keys()).map((r) => r.url).filter((u) => u.includes("python-snapshot")) : [];
  return { start: started.start, note: started.note, timings, readyMs, text, saving, keys };
}

self.onmessage = async ({ data }) => {
  try {
    self.postMessage(await run(data));
  } catch (error) {
    self.postMessage({ error: String((error && error.stack) || error) });
  }
};
