// Python start from a memory snapshot (worker side, no DOM): a copy of the WebAssembly heap taken
// once Python, NumPy and mamba_wasm were imported, kept in the Cache API; a later visit puts the heap
// back instead of starting Python and importing NumPy again. The site ships one too, made at build
// time by the same code under Node (scripts/make_snapshot.mjs), for a visit with none saved. Any
// failure (no snapshot, a corrupt or truncated one, another build's, storage full, a restored heap
// that does not answer) falls back to the next start (saved, the site's, normal), and the caller is
// told which start was taken and why.
//
// Why NumPy needs more than Pyodide 0.27.7's own snapshot (which holds the heap only): NumPy's
// extension modules are separate WebAssembly instances (dynamic libraries). Each keeps its static
// data in the heap, at a `memoryBase`, and its functions in the shared function table, at a
// `tableBase`; Python objects in the heap point at both. So, before the heap is put back, each
// library loaded at snapshot time is instantiated again at the same two bases, in the same order
// (Emscripten's loader, loadWebAssemblyModule, takes the bases from a `struct dso` handle whose
// "allocated" byte is set), and the few table slots added beside the libraries' own ranges (the
// PyInit_* functions dlsym handed out) are set to the same functions. The restored heap then
// overwrites whatever instantiation wrote. Python's files are not in the heap either (Pyodide's
// file system lives in JavaScript): the installed packages' files are kept in the entry and written
// back. Pyodide's own snapshot format checks the runtime's build id; the key below names the exact
// runtime, NumPy and package files, so another build never restores this heap.

export const SITE_PACKAGES = "/lib/python3.12/site-packages";
const MAGIC = 0x3153574d;  // "MWS1", little-endian: the first four bytes of an entry
const PREFIX_BYTES = 40;   // magic (4), header length (4), sha256 of everything after the prefix (32)

// Offsets in Emscripten's `struct dso` (libc dynlink.h) that its JavaScript loader reads and writes.
const DSO = { allocated: 8, memoryBase: 12, memorySize: 16, tableBase: 20, tableSize: 24, bytes: 64 };

// The Cache API key of the snapshot for these files: {name: sha256}. Keys of older snapshots share
// everything before the "?".
export function snapshotKey(scopeUrl, hashes) {
  const query = Object.entries(hashes).map(([name, sha]) => `${encodeURIComponent(name)}=${sha}`).join("&");
  return new URL(`python-snapshot?${query}`, scopeUrl).href;
}

// Start Python. `loadPyodide`: the loader (pyodide.mjs), with pyodide.asm.js already evaluated
// (it defines globalThis._createPyodideModule); `options`: loadPyodide's options; `cache`: a Cache
// (or null: no snapshot saved or read); `key`: snapshotKey(...); `builtEntry`: null, or a function
// returning a promise of the site's own snapshot, made at build time (scripts/make_snapshot.mjs),
// gzipped: tried when no snapshot was saved here (or the saved one failed), and saved here once it
// answered; `wheels()`: the wheels' bytes to install on a normal start; `imports`: Python source
// run before the snapshot (the imports to keep in it); `check`: Python source whose value must be
// true on a restored heap; `lap(name)`: called at the end of each phase (snapshot_read_ms,
// snapshot_verify_ms, snapshot_restore_ms, check_ms on a restore, snapshot_failed_ms when one
// failed; python_ms, packages_ms, snapshot_make_ms on a normal start).
// Returns {pyodide, start: "snapshot" | "normal", source: "saved" | "built" (the snapshot restored),
// note, saving}: `note` says why a snapshot was not used (each tried, or that there was none), `saving`
// settles with {saved, note} once a snapshot is stored here (or not).
export async function startPython({ loadPyodide, options, cache, key, builtEntry = null, wheels, imports, check, lap }) {
  const failures = [];  // why a snapshot tried was not used
  const saved = cache ? await readEntry(cache, key) : null;
  const candidates = [];
  if (saved) candidates.push({ source: "saved", entry: async () => saved, checked: false });
  // The site's: its download checked against the manifest's sha256, its inflation by gzip's CRC.
  if (builtEntry) candidates.push({ source: "built", entry: async () => gunzip(await builtEntry()), checked: true });
  for (const { source, entry, checked } of candidates) {
    try {
      const bytes = await entry();
      const pyodide = await restore(loadPyodide, options, bytes, checked, lap);
      if (pyodide.runPython(check) !== true) throw new Error("the restored interpreter failed its check");
      lap("check_ms");
      const saving = source === "built" && cache ? store(cache, key, bytes) : Promise.resolve({ saved: true, note: "" });
      return { pyodide, start: "snapshot", source, note: failures.join("; "), saving };
    } catch (error) {
      lap("snapshot_failed_ms");
      failures.push(`${source === "built" ? "the site's snapshot" : "snapshot"} not used: ${error.message}`);
      console.warn(failures.at(-1));
      if (source === "saved") {
        try { await cache.delete(key); } catch { /* it will be replaced below anyway */ }
      }
    }
  }
  const note = failures.join("; ") || (cache ? "no snapshot saved yet" : "no Cache API");
  const wheelBytes = wheels();  // downloading while Python starts
  wheelBytes.catch(() => {});   // awaited below
  const pyodide = await loadPyodide({ ...options, _makeSnapshot: Boolean(cache) });
  lap("python_ms");
  for (const wheel of await wheelBytes) pyodide.unpackArchive(wheel, "wheel", { extractDir: SITE_PACKAGES });
  pyodide.runPython(imports);
  lap("packages_ms");
  let saving = Promise.resolve({ saved: false, note });
  if (cache) {
    try {
      saving = store(cache, key, makeEntry(pyodide));
    } catch (error) {
      saving = Promise.resolve({ saved: false, note: `no snapshot made: ${error.message}` });
    }
    lap("snapshot_make_ms");
  }
  return { pyodide, start: "normal", source: "", note, saving };
}

// ---- an entry: prefix, header (JSON), the heap, the files -----------------------------------------

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

async function gunzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function readEntry(cache, key) {
  try {
    const response = await cache.match(key);
    return response ? new Uint8Array(await response.arrayBuffer()) : null;
  } catch {
    return null;
  }
}

// The libraries dlopen loaded, in load order, with the bases Emscripten recorded in their handles.
function loadedLibraries(M) {
  const byName = new Map();
  for (const [handle, dso] of Object.entries(M.LDSO.loadedLibsByHandle)) {
    if (dso.name === "__main__") continue;
    const at = Number(handle);
    const known = byName.get(dso.name);
    if (known) {
      known.handles.push(at);
      continue;
    }
    if (!M.HEAP8[at + DSO.allocated]) throw new Error(`${dso.name} has no recorded bases`);
    byName.set(dso.name, { path: dso.name, handles: [at],
      memoryBase: M.HEAPU32[(at + DSO.memoryBase) >> 2], memorySize: M.HEAP32[(at + DSO.memorySize) >> 2],
      tableBase: M.HEAPU32[(at + DSO.tableBase) >> 2], tableSize: M.HEAP32[(at + DSO.tableSize) >> 2] });
  }
  for (const name of Object.keys(M.LDSO.loadedLibsByName)) {
    const dso = M.LDSO.loadedLibsByName[name];
    if (name !== "__main__" && !byName.has(dso.name)) {
      throw new Error(`${name} was loaded without dlopen (its bases are unknown)`);
    }
  }
  return [...byName.values()].sort((a, b) => a.tableBase - b.tableBase);
}

// Table slots from the end of the main module's (where the libraries start) to the end that lie
// outside every library's own range, each named [library path, export name].
function extraTableSlots(M, libs) {
  const names = new Map();
  for (const lib of libs) {
    for (const [symbol, value] of Object.entries(M.LDSO.loadedLibsByName[lib.path].exports)) {
      if (typeof value === "function" && !names.has(value)) names.set(value, [lib.path, symbol]);
    }
  }
  const slots = {};
  const got = {};  // symbols whose address (GOT entry) is one of those slots
  const start = libs.length ? libs[0].tableBase : M.wasmTable.length;
  for (let i = start; i < M.wasmTable.length; i++) {
    if (libs.some((lib) => i >= lib.tableBase && i < lib.tableBase + lib.tableSize)) continue;
    const fn = M.wasmTable.get(i);
    if (fn === null) continue;
    const name = names.get(fn);
    if (!name) throw new Error(`table slot ${i} holds a function of no loaded library`);
    slots[i] = name;
  }
  for (const [symbol, global] of Object.entries(M.GOT)) {
    if (slots[global.value]) got[symbol] = global.value;
  }
  return { start, slots, got, length: M.wasmTable.length };
}

function packageFiles(FS) {
  const files = [];
  const walk = (dir) => {
    for (const name of FS.readdir(dir)) {
      if (name === "." || name === "..") continue;
      const path = `${dir}/${name}`;
      if (FS.isDir(FS.stat(path).mode)) walk(path);
      else files.push({ path, bytes: FS.readFile(path) });
    }
  };
  walk(SITE_PACKAGES);
  return files;
}

function makeEntry(pyodide) {
  const M = pyodide._module;
  const libs = loadedLibraries(M);
  const table = extraTableSlots(M, libs);
  const files = packageFiles(pyodide.FS);
  const heap = pyodide.makeMemorySnapshot();
  let offset = 0;
  const place = (size) => { const at = offset; offset += size; return at; };
  const json = JSON.stringify({
    libs, table,
    heap: { offset: place(heap.length), size: heap.length },
    files: files.map(({ path, bytes }) => ({ path, offset: place(bytes.length), size: bytes.length })),
  });
  // Padded with spaces so that the heap starts at a multiple of 16: Pyodide reads it as 32-bit words.
  const encoded = new TextEncoder().encode(json);
  const header = new Uint8Array(encoded.length + (16 - ((PREFIX_BYTES + encoded.length) % 16)) % 16).fill(0x20);
  header.set(encoded);
  const body = PREFIX_BYTES + header.length;
  const out = new Uint8Array(body + offset);
  const prefix = new DataView(out.buffer);
  prefix.setUint32(0, MAGIC, true);
  prefix.setUint32(4, header.length, true);
  out.set(header, PREFIX_BYTES);
  out.set(heap, body);
  let at = body + heap.length;
  for (const { bytes } of files) {
    out.set(bytes, at);
    at += bytes.length;
  }
  return out;
}

async function store(cache, key, entry) {
  try {
    entry.set(await sha256(entry.subarray(PREFIX_BYTES)), 8);
    const prefix = key.split("?")[0];
    for (const old of await cache.keys()) {  // other builds' snapshots: never restored again
      if (old.url.split("?")[0] === prefix && old.url !== key) await cache.delete(old);
    }
    await cache.put(key, new Response(entry));
    return { saved: true, note: "" };
  } catch (error) {
    return { saved: false, note: `snapshot not saved: ${error.name === "QuotaExceededError" ? "storage quota" : error.message}` };
  }
}

// The entry's parts; its own sha256 is checked unless `checked` (its bytes were already).
async function parseEntry(entry, checked) {
  if (entry.length < PREFIX_BYTES) throw new Error("the saved snapshot is truncated");
  const prefix = new DataView(entry.buffer, entry.byteOffset, PREFIX_BYTES);
  if (prefix.getUint32(0, true) !== MAGIC) throw new Error("the saved snapshot is not one");
  if (!checked) {
    const expected = entry.subarray(8, PREFIX_BYTES);
    const actual = await sha256(entry.subarray(PREFIX_BYTES));
    if (!actual.every((b, i) => b === expected[i])) throw new Error("the saved snapshot is corrupt or truncated");
  }
  const headerBytes = prefix.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(entry.subarray(PREFIX_BYTES, PREFIX_BYTES + headerBytes)));
  const body = entry.subarray(PREFIX_BYTES + headerBytes);
  const part = ({ offset, size }) => body.subarray(offset, offset + size);
  return { header, heap: part(header.heap), files: header.files.map((f) => ({ path: f.path, bytes: part(f) })) };
}

// ---- restore ------------------------------------------------------------------------------------

// Instantiate a library at the bases it had: a scratch handle (the restored heap replaces it)
// carries them to Emscripten's loader; the real handles, from the heap, then name the library.
async function reloadLibrary(M, lib, module) {
  const scratch = M._calloc(1, DSO.bytes);
  M.HEAP8[scratch + DSO.allocated] = 1;
  M.HEAPU32[(scratch + DSO.memoryBase) >> 2] = lib.memoryBase;
  M.HEAP32[(scratch + DSO.memorySize) >> 2] = lib.memorySize;
  M.HEAPU32[(scratch + DSO.tableBase) >> 2] = lib.tableBase;
  M.HEAP32[(scratch + DSO.tableSize) >> 2] = lib.tableSize;
  const dso = M.newDSO(lib.path, scratch, "loading");
  dso.global = false;  // as dlopen without RTLD_GLOBAL, Python's default
  dso.exports = await M.loadWebAssemblyModule(module,
    { loadAsync: true, nodelete: true, allowUndefined: true, global: false }, lib.path, {}, scratch);
  delete M.LDSO.loadedLibsByHandle[scratch];
  for (const handle of lib.handles) M.LDSO.loadedLibsByHandle[handle] = dso;
}

async function restore(loadPyodide, options, entryBytes, checked, lap) {
  lap("snapshot_read_ms");
  const { header, heap, files } = await parseEntry(entryBytes, checked);
  const fileBytes = new Map(files.map((f) => [f.path, f.bytes]));
  const modules = Promise.all(header.libs.map((lib) => WebAssembly.compile(fileBytes.get(lib.path))));
  modules.catch(() => {});  // awaited below
  lap("snapshot_verify_ms");
  const create = globalThis._createPyodideModule;
  if (typeof create !== "function") throw new Error("pyodide.asm.js is not loaded");
  globalThis._createPyodideModule = async (settings) => {
    const M = await create(settings);
    if (M.wasmTable.length !== header.table.start) throw new Error("the function table differs from the snapshot's");
    const compiled = await modules;
    for (const [i, lib] of header.libs.entries()) await reloadLibrary(M, lib, compiled[i]);
    if (M.wasmTable.length < header.table.length) M.wasmTable.grow(header.table.length - M.wasmTable.length);
    for (const [slot, [path, symbol]] of Object.entries(header.table.slots)) {
      M.setWasmTableEntry(Number(slot), M.LDSO.loadedLibsByName[path].exports[symbol]);
    }
    for (const [symbol, slot] of Object.entries(header.table.got)) {
      if (M.GOT[symbol]) M.GOT[symbol].value = slot;
    }
    M.updateTableMap(header.table.start, M.wasmTable.length - header.table.start);
    return M;
  };
  let pyodide;
  try {
    pyodide = await loadPyodide({ ...options, _loadSnapshot: heap });
  } finally {
    globalThis._createPyodideModule = create;
  }
  // Python keeps, in its heap, the table slot of a helper Pyodide makes as it starts (0 where the engine
  // cannot make it): the restored heap names the one of the engine that made the snapshot (0 under
  // the build's Node), so it is set to this engine's.
  const M = pyodide._module;
  M.HEAP32[(M.__PyRuntime + M.HEAP32[M.__PyEM_EMSCRIPTEN_COUNT_ARGS_OFFSET >> 2]) >> 2] = M._PyEM_CountArgsPtr;
  for (const { path, bytes } of files) {
    pyodide.FS.mkdirTree(path.slice(0, path.lastIndexOf("/")));
    pyodide.FS.writeFile(path, bytes);
  }
  lap("snapshot_restore_ms");
  return pyodide;
}
