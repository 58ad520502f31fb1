// The SIMD projection kernels (web/kernels/matmul.wat, assembled by build.py into kernels/matmul.wasm),
// started beside Python (worker side, and in Node for the tests): instantiated on Pyodide's own
// WebAssembly.Memory, so they read NumPy's arrays where they lie, and handed to the package
// (mamba_wasm/kernels.py), through which every projection of every model then goes. Where they
// cannot start (a browser without WebAssembly SIMD, a file that did not come) Python keeps its
// NumPy projections and the load's timings say why: the page works either way.

export const KERNELS_FILE = "kernels/matmul.wasm";

// Whether this worker may use the kernels: `?kernel=0` on the page (passed on to the worker's
// URL by worker-client.js) switches them off, for the benchmark's before/after rows.
export function kernelsWanted(location) {
  return new URLSearchParams(location.search).get("kernel") !== "0";
}

// Install the kernels for `pyodide` (started on `memory`, its WebAssembly.Memory) from `bytes` (a
// promise of the verified .wasm). Returns {backend: "wasm-simd128" | "numpy", note: why not, or ""}.
export async function installKernels(pyodide, memory, bytes, wanted = true) {
  const kernels = pyodide.pyimport("mamba_wasm.kernels");
  try {
    if (!wanted) return { backend: kernels.backend(), note: "SIMD kernels switched off (?kernel=0)" };
    if (!(memory instanceof WebAssembly.Memory)) throw new Error("Pyodide's WebAssembly.Memory was not seen");
    const { instance } = await WebAssembly.instantiate(await bytes, { env: { memory } });
    kernels.use(instance.exports);
    return { backend: kernels.backend(), note: "" };
  } catch (error) {
    return { backend: kernels.backend(), note: `SIMD kernels not used: ${error && error.message}` };
  } finally {
    kernels.destroy();
  }
}
