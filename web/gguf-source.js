// A llama.cpp .gguf file (worker side): one file holds the model and its tokenizer. Before the
// file is fetched, its header (metadata and tensor table) is read from its first bytes and
// described by the package's own reader (Python's plan.describe_gguf_prefix): the architecture,
// the parameters, the float32 memory after dequantisation and how the tensors are stored. A file
// too large for the tab is refused then, before the rest of it is downloaded.
//
// The first bytes come from a growing prefix, FIRST_PREFIX_BYTES then four times more each time
// Python says the prefix ends before the tensor table does:
//   a URL         HTTP Range requests; from a server that ignores Range (200, the whole file), the
//                 download itself, read as it arrives: a refusal cancels it at once, and otherwise
//                 it goes on as the model's download (plan.rest)
//   a saved URL   the file in the Cache API (no network)
//   a File        the user's file, sliced
// With Range, the fetch phase downloads the whole file again (the header is 1-2 MB of a 50k
// vocabulary: a few % of a quantized mamba-130m).

import { checkedFetch, unreachable, refusedUrl } from "./downloads.js";
import { LoadedModel } from "./generation.js";
import facts from "./facts.js";

const FIRST_PREFIX_BYTES = 65536;
// The longest header read: a 256k-token vocabulary is about 10 MB of metadata.
const MAX_HEADER_BYTES = 64 * 1024 * 1024;
// The fields of plan.describe (the protocol's DESCRIPTION) among describe_gguf's.
const DESCRIPTION_FIELDS = ["architecture", "n_params", "float32_bytes", "state_nbytes", "vocab_size",
  "n_layer", "d_model", "max_weight_bytes"];

export const isGgufName = (name) => /\.gguf$/i.test(name);

// Whether Q8_0 matrices stay as the file holds them (mamba_wasm/packed.py): when the SIMD kernels
// multiply by them; NumPy alone would have to dequantize them at every token. F16 matrices are
// widened to float32 at load either way (the float32 kernel is the faster one).
const keepsPacked = (runtime) => runtime.projections === "wasm-simd128";

// The .gguf file of `text` (a URL), normalised (no query; a Hugging Face blob/ page -> resolve/);
// null when it names no .gguf file.
export function ggufUrl(text) {
  let url;
  try {
    url = new URL(text.trim(), self.location.href);
  } catch {
    return null;
  }
  if (!isGgufName(url.pathname)) return null;
  const refusal = refusedUrl(url.href);
  if (refusal) throw new Error(refusal);
  if (url.hostname === "huggingface.co") url.pathname = url.pathname.replace(/^(\/[^/]+\/[^/]+)\/blob\//, "$1/resolve/");
  url.search = "";
  url.hash = "";
  return url.href;
}

// Python's describe_gguf_prefix: null when `prefix` ends too soon, else {description, quantization,
// header_bytes, unsupported_types, weight_bytes}. Raises the package's GGUFError (naming `source`)
// for a corrupt header or a model the package does not read.
export function describeGgufPrefix(runtime, prefix, fileSize, source) {
  const describe = runtime.py.plan.describe_gguf_prefix;
  const view = runtime.pyodide.toPy(prefix);
  try {
    const result = describe.callKwargs(view, fileSize, { source, packed: keepsPacked(runtime) });
    if (result === undefined || result === null) return null;
    try {
      return result.toJs({ dict_converter: Object.fromEntries });
    } finally {
      result.destroy();
    }
  } finally {
    view.destroy();
    describe.destroy();
  }
}

// ---- planning ------------------------------------------------------------------------------------

// The plan of a .gguf file (model-store.js's plan, plus format, quantization and maxFileBytes):
// `file` is {url, saved: Blob | null} or {local: File}. describe(prefix, fileSize, source) is
// describeGgufPrefix bound to the runtime; checkFits(name, description) throws for a model too
// large for the tab.
export async function planGguf(file, describe, signal, checkFits) {
  if (file.local) {
    const { local } = file;
    const header = await readHeader((n) => sliceOf(local, n), local.size, describe, local.name);
    return finishPlan({ kind: "files", name: local.name, base: null, size: local.size, saved: false,
      download_bytes: 0, localFiles: new Map([[local.name, local]]) }, header, checkFits);
  }
  const name = decodeURIComponent(new URL(file.url).pathname.split("/").pop());
  if (file.saved) {
    const { saved } = file;
    const header = await readHeader((n) => sliceOf(saved, n), saved.size, describe, name);
    return finishPlan({ kind: "url", name, base: file.url, size: saved.size, saved: true, download_bytes: 0 },
      header, checkFits);
  }
  const remote = new RemoteFile(file.url, name, signal);
  let header;
  try {
    header = await readHeader((n) => remote.prefix(n), null, describe, name, () => remote.size);
  } catch (error) {
    remote.cancel();
    throw error;
  }
  let plan;
  try {
    plan = finishPlan({ kind: "url", name, base: file.url, size: remote.size, saved: false,
      download_bytes: remote.size ?? 0 }, header, checkFits);
  } catch (error) {
    throw remote.refused(error);
  }
  if (remote.stream) plan.rest = (count) => remote.stream.rest(count, plan.maxFileBytes);
  else if (remote.bytes.length === remote.size) plan.inHand.set(name, remote.bytes);  // a small file: all read
  return plan;
}

async function sliceOf(blob, n) {
  return new Uint8Array(await blob.slice(0, n).arrayBuffer());
}

// {info, prefix}: the prefix grows until Python describes it. size: the file's bytes when known
// (sizeNow() reads it once the first bytes came, for a URL).
async function readHeader(readPrefix, size, describe, label, sizeNow = () => size) {
  for (let n = FIRST_PREFIX_BYTES; ; n *= 4) {
    const prefix = await readPrefix(n);
    const known = sizeNow() ?? (prefix.length < n ? prefix.length : Number.MAX_SAFE_INTEGER);
    const info = describe(prefix, known, label);
    if (info) return { info, prefix };
    if (n >= MAX_HEADER_BYTES) {
      throw new Error(`${label}: its header (metadata and tensor table) runs past the first `
        + `${(MAX_HEADER_BYTES / 2 ** 20).toFixed(0)} MiB, the most this page reads: a corrupt file, or not a model.`);
    }
  }
}

function finishPlan(plan, { info }, checkFits) {
  const description = Object.fromEntries(DESCRIPTION_FIELDS.map((key) => [key, info[key]]));
  if (info.unsupported_types.length) {
    throw new Error(`${plan.name}: it holds tensors of type ${info.unsupported_types.join(", ")}, which the `
      + "package does not dequantize (see the README's GGUF types). Nothing more was downloaded.");
  }
  checkFits(plan.name, description);
  // The tensors as float32 at most (a quantized file holds fewer bytes), after the header.
  const maxFileBytes = description.max_weight_bytes + info.header_bytes + facts.limits.header_slack_bytes;
  if (plan.size !== null && plan.size > maxFileBytes) {
    throw new Error(`${plan.name}: the file holds ${plan.size.toLocaleString("en")} bytes, but its header `
      + `implies at most ${maxFileBytes.toLocaleString("en")} (its tensors as float32, plus the header). `
      + "Nothing more was downloaded: the file holds data no tensor needs.");
  }
  const { size, ...rest } = plan;
  return { ...rest, files: [{ name: plan.name, size: size ?? 0 }], description, format: "gguf",
    quantization: info.quantization, weight_bytes: info.weight_bytes, maxFileBytes, inHand: new Map() };
}

// ---- a .gguf file at a URL -----------------------------------------------------------------------

// The first bytes of a file at `url`: by Range requests while the server answers 206, else from
// the one download (a StreamedFile) the server sends instead.
class RemoteFile {
  constructor(url, label, signal) {
    this.url = url;
    this.label = label;
    this.signal = signal;
    this.bytes = new Uint8Array(0);
    this.size = null;  // from Content-Range (or Content-Length), once known
    this.stream = null;
  }

  async prefix(n) {
    if (this.stream) return this.stream.fill(n);
    const start = this.bytes.length;
    const end = Math.min(n, this.size ?? n) - 1;
    if (start > end) return this.bytes;
    let response;
    try {
      response = await checkedFetch(this.url, { headers: { Range: `bytes=${start}-${end}` }, cache: "no-cache",
        signal: this.signal });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new Error(await unreachable(this.url, e));
    }
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get("Content-Range") || "");
    if (response.status === 206 && range && Number(range[1]) === start) {
      this.size = Number(range[3]);
      const part = new Uint8Array(await response.arrayBuffer());
      const grown = new Uint8Array(start + part.length);
      grown.set(this.bytes);
      grown.set(part, start);
      this.bytes = grown;
      return this.bytes;
    }
    if (response.status === 200 && start === 0) {  // no Range support: this is the download
      this.size = Number(response.headers.get("Content-Length")) || null;
      this.stream = new StreamedFile(response, this.label);
      return this.stream.fill(n);
    }
    if (response.body) await response.body.cancel();
    throw new Error(`${this.url}: the server answered HTTP ${response.status}`
      + `${response.statusText ? ` (${response.statusText})` : ""}.`);
  }

  cancel() {
    if (this.stream) this.stream.cancel();
  }

  // The plan refused the file (`error`): the download stops, and the message says how little of
  // the file was read.
  refused(error) {
    if (!this.stream) return error;
    const read = this.stream.length;
    this.stream.cancel();
    return new Error(`${error.message.replace(/ Nothing (more )?was downloaded\.?/, "")} The download was `
      + `stopped after ${read.toLocaleString("en")} of ${this.size ? this.size.toLocaleString("en") : "?"} bytes.`);
  }
}

// A response body read as it arrives: its first bytes for the header, then the rest.
class StreamedFile {
  constructor(response, label) {
    this.reader = response.body.getReader();
    this.label = label;
    this.declared = Number(response.headers.get("Content-Length")) || 0;
    this.buffer = new Uint8Array(FIRST_PREFIX_BYTES);  // the whole size only once the plan accepted it
    this.length = 0;
    this.done = false;
  }

  async fill(n, onBytes = () => {}, limit = Infinity) {
    while (!this.done && this.length < n) {
      let chunk;
      try {
        chunk = await this.reader.read();
      } catch (e) {
        if (e.name === "AbortError") throw e;
        throw new Error(`${this.label}: the connection broke after ${this.length.toLocaleString("en")} bytes `
          + `(${e.message}). Retry to download it again.`);
      }
      if (chunk.done) {
        this.done = true;
        break;
      }
      const { value } = chunk;
      if (this.length + value.length > limit) {
        this.cancel();
        throw new Error(`${this.label}: the server sent more than ${limit.toLocaleString("en")} bytes, the most `
          + "a GGUF file of this model can hold. The download was stopped.");
      }
      if (this.length + value.length > this.buffer.length) {
        const bigger = new Uint8Array(Math.max(this.buffer.length * 2, this.length + value.length));
        bigger.set(this.buffer.subarray(0, this.length));
        this.buffer = bigger;
      }
      this.buffer.set(value, this.length);
      this.length += value.length;
      onBytes(value.length);
    }
    return this.buffer.subarray(0, this.length);
  }

  // Every byte, counted through count(n) (those read for the header first).
  async rest(count, limit) {
    count(this.length);
    if (this.declared > this.buffer.length && this.declared <= limit) {
      const whole = new Uint8Array(this.declared);
      whole.set(this.buffer.subarray(0, this.length));
      this.buffer = whole;
    }
    const bytes = await this.fill(Infinity, count, limit);
    return bytes.length === this.buffer.length ? bytes : bytes.slice();
  }

  cancel() {
    this.reader.cancel().catch(() => {});
  }
}

// ---- loading -------------------------------------------------------------------------------------

// The model and the tokenizer of one .gguf file's bytes (emptied from byName: they move into the
// WASM heap), read once by the package.
export function readGgufModel(runtime, name, fileName, byName) {
  const { pyodide, py } = runtime;
  const view = pyodide.toPy(byName.get(fileName));
  byName.clear();
  const readGguf = pyodide.pyimport("mamba_wasm.gguf").read_gguf;
  const loadGgufModel = pyodide.pyimport("mamba_wasm.gguf_checkpoint").load_gguf_model;
  const fromGguf = py.tokenizerClass.from_gguf;
  let gguf = null;
  let model = null;
  let tokenizer = null;
  try {
    gguf = readGguf.callKwargs(view, { source: fileName });
    model = loadGgufModel.callKwargs(gguf, { packed: keepsPacked(runtime) });
    tokenizer = fromGguf(gguf);
  } catch (e) {
    if (model) model.destroy();
    throw e;
  } finally {
    for (const proxy of [gguf, fromGguf, loadGgufModel, readGguf, view]) if (proxy) proxy.destroy();
  }
  return new LoadedModel(name, model, tokenizer, py.Session(model, tokenizer));
}
