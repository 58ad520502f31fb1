// pyodide.asm.wasm compiled beside the rest of the start (worker side). Left to itself, Pyodide
// fetches and compiles the wasm only once its loader has run; here the compile starts the moment
// the verified bytes are there (WebAssembly.compile works on the browser's own threads), while the
// other files still download and while the loader's JavaScript is evaluated, and Pyodide is handed
// the compiled module through Emscripten's `instantiateWasm` hook.

// The compiled module of `bytes` (a promise of the verified pyodide.asm.wasm).
export function compileWasm(bytes) {
  const module = bytes.then((b) => WebAssembly.compile(b));
  module.catch(() => {});  // awaited by instantiateWith's hook; a download error is reported by the load
  return module;
}

// Until the returned function is called, Pyodide starts from `module` (compileWasm's promise): the
// _createPyodideModule that pyodide.asm.js defined is wrapped to pass Emscripten an instantiateWasm
// that instantiates it. A module that fails to compile or instantiate fails the start (Pyodide's own
// hook only logs it, and the start would never end). onMemory(memory) is handed the WebAssembly.Memory
// Emscripten made and imports: the SIMD kernels (kernels.js) work on the same memory.
export function instantiateWith(module, onMemory = () => {}) {
  const create = globalThis._createPyodideModule;
  if (typeof create !== "function") throw new Error("pyodide.asm.js is not loaded");
  globalThis._createPyodideModule = (settings) => {
    let fail;
    const failed = new Promise((_, reject) => { fail = reject; });
    settings.instantiateWasm = (imports, receive) => {
      onMemory(imports.env.memory);
      module.then((m) => WebAssembly.instantiate(m, imports).then((instance) => receive(instance, m)))
        .catch((error) => fail(new Error(`pyodide.asm.wasm: ${error.message}`)));
      return {};  // the exports come later, through receive
    };
    return Promise.race([create(settings), failed]);
  };
  return () => { globalThis._createPyodideModule = create; };
}
