// The page <-> worker protocol: every message and its fields, in one place. Both sides import this
// module and send through `post`, which refuses a message or a field not listed here; tests record
// all traffic in both directions and run `problems` over it (tests/e2e/test_protocol.py).
//
// A field's spec is a type name ("string", "number", "boolean", "object": any plain object,
// "array", "any"), optionally "|null" (may be null) and a trailing "?" (may be absent), or an object
// of field specs for a nested record. Every request carries an `id`; each answer carries the `id`
// of the request it answers (`alive` answers nothing).

const ID = "number";

// Sampling settings of a generation (SamplingParams' fields, plus the length and the seed).
const PARAMS = {
  max_new_tokens: "number", temperature: "number", top_k: "number", top_p: "number",
  repetition_penalty: "number", seed: "number",
  stop_at_eos: "boolean?",  // false: an end-of-text token is generated like any other (benchmarks)
};

// What a checkpoint is, as plan.py's describe_config says before anything large is fetched.
const DESCRIPTION = {
  architecture: "string", n_params: "number", float32_bytes: "number", state_nbytes: "number",
  vocab_size: "number", n_layer: "number", d_model: "number",
  max_weight_bytes: "number",  // the most its weight files may hold, before a header's slack per file
};

// One shard of a model split across workers: its index of count, its part of the files ([name,
// ArrayBuffer-backed bytes] pairs, transferred), and what the workers sum through: the
// SharedArrayBuffer (a cross-origin isolated page), else its MessagePorts to each worker (null: itself).
const SHARD_LOAD = { id: ID, index: "number", count: "number", name: "string", files: "array",
  sab: "object?", slot_floats: "number?", ports: "array?" };

export const TO_WORKER = {
  // A model of this site ({name, base, files}), a folder URL ({name, base}) or the user's files
  // ({name, local}). The worker starts Python when needed, plans, fetches and loads it.
  load: { id: ID, model: { name: "string", base: "string?", files: "array?", local: "array?" },
    workers: "number?",  // > 1: split the model across that many workers (shard-pool.js)
    worker_weight_limit: "number?" },  // tests: a lower limit of float32 weight bytes per worker
  // inspect: record each token's probabilities and keep state snapshots (the token view, branch)
  generate: { id: ID, prompt: "string", params: PARAMS, inspect: "boolean?" },
  continue: { id: ID, more_tokens: "number" },  // resume the latest generation where it ended
  stop: { id: ID },  // the id of the generate/continue request: honoured before the next token
  cancel: { id: ID },  // the id of the load request: aborts its downloads, the old model stays
  "saved-list": { id: ID },  // answered at once by `saved`
  "saved-delete": { id: ID, base: "string" },  // forget a saved model; answered by `saved`
  // To a follower worker (shard-worker.js): the leader's shard-load, passed on by the page.
  "shard-load": SHARD_LOAD,
  // The inspection views (web/inspect.js): generated token `position` becomes `token` and the text
  // after it is generated again (an inspected generation only); score or probe a text.
  branch: { id: ID, position: "number", token: "number" },
  score: { id: ID, text: "string" },
  probe: { id: ID, text: "string" },
};

// One generated token of an inspected generation (mamba_wasm/page_views.py token_records): its
// text, probability as sampled and under the raw model, alternatives [[id, text, p, p_model]].
const TOKEN_RECORDS = "array?";

export const TO_PAGE = {
  // Loading phases, each sent once when it begins (`phase`), with bytes of total while
  // downloading (total 0: busy, no byte count).
  progress: { id: ID, phase: "string", text: "string", loaded: "number", total: "number" },
  // Before a URL's or the user's model is fetched: what it takes (download_bytes 0 when saved).
  plan: {
    id: ID,
    plan: {
      kind: "string", name: "string", base: "string|null", files: "array", download_bytes: "number",
      total_bytes: "number", saved: "boolean", description: DESCRIPTION,
      // a llama.cpp .gguf file: format "gguf" and how its matrices are stored ("Q8_0", "F16",
      // "Q4_K/Q6_K mix"); weight_bytes what its weights take in memory as this worker loads them
      // (Q8_0 matrices kept as they are for the SIMD kernels, others dequantized to float32)
      format: "string?", quantization: "string?", weight_bytes: "number?",
    },
  },
  ready: {
    id: ID,
    model: { name: "string", ...DESCRIPTION, config: "object" },
    source: { kind: "string", base: "string|null?", download_bytes: "number?", saved: "boolean?",
      note: "string?" },
    elapsed_ms: "number",
    // {phase name: milliseconds}; on the load that started Python also start: "snapshot" |
    // "normal", snapshot: "saved" | "built" (which one was restored) and start_note: why a snapshot
    // was not used; spans: {phase: [start, end] ms from the request's start} of the phases that
    // overlap (download, python)
    timings: "object",
  },
  started: { id: ID, n_prompt: "number", prefill_ms: "number", n_prefilled: "number", prompt_state_reused: "boolean",
    state_nbytes: "number", continued: "boolean" },
  token: { id: ID, text: "string", n_generated: "number", tokens_per_second: "number",
    wasm_heap_bytes: "number", tokens: TOKEN_RECORDS },
  // tokens_after_stop: tokens generated after Stop arrived (0: it lands between tokens);
  // python_objects: objects the Python GC tracks, to spot leaks (an undestroyed PyProxy).
  done: { id: ID, reason: "string", text: "string", n_generated: "number",
    tokens_per_second: "number", wasm_heap_bytes: "number", tokens_after_stop: "number|null",
    python_objects: "number", tokens: TOKEN_RECORDS },
  // A branch: the generated text up to and including the new token, which is tokens[0]; then
  // started, token and done as for continue.
  branched: { id: ID, position: "number", text: "string", tokens: "array" },
  // score: scoring.score of the text (nll[i] scores ids[i+1], whose text is pieces[i]);
  // probe: mean Δ and kept (exp(Δ·A)) per token and layer, rows of n_layer numbers.
  scored: { id: ID, ids: "array", nll: "array", pieces: "array", totals: "object" },
  probed: { id: ID, ids: "array", pieces: "array", n_layer: "number", delta: "array", kept: "array" },
  error: { id: ID, during: "string", message: "string" },
  cancelled: { id: ID, during: "string" },  // a load ended by cancel; nothing changed
  saved: { id: ID, models: "array", message: "string?" },  // the models saved in this browser
  // From the leader, for the page to hand to follower `index` (a model split across workers).
  "shard-load": SHARD_LOAD,
  // From a follower: its shard loaded (its WASM heap and weights), or it failed (the model is down).
  "shard-ready": { id: ID, index: "number", heap_bytes: "number", weights_bytes: "number" },
  "shard-error": { id: ID, index: "number", message: "string" },
  // Sent once (no id) when the worker holds the Web Lock named by its Worker name: the page then
  // waits on that lock and so learns at once when the worker dies.
  alive: {},
};

const DIRECTIONS = { "to-worker": TO_WORKER, "to-page": TO_PAGE };

function typeMatches(value, type) {
  if (type === "any") return true;
  if (type === "array") return Array.isArray(value);
  if (type === "object") return value !== null && typeof value === "object" && !Array.isArray(value);
  return typeof value === type;
}

function fieldProblems(record, spec, where) {
  if (record === null || typeof record !== "object" || Array.isArray(record)) {
    return [`${where}: expected an object`];
  }
  const problems = [];
  for (const key of Object.keys(record)) {
    if (!(key in spec)) problems.push(`${where}.${key}: not in the protocol`);
  }
  for (const [key, fieldSpec] of Object.entries(spec)) {
    const value = record[key];
    if (typeof fieldSpec === "object") {
      if (value === undefined) problems.push(`${where}.${key}: missing`);
      else problems.push(...fieldProblems(value, fieldSpec, `${where}.${key}`));
      continue;
    }
    const optional = fieldSpec.endsWith("?");
    const [type, nullable] = fieldSpec.replace(/\?$/, "").split("|");
    if (value === undefined) {
      if (!optional) problems.push(`${where}.${key}: missing`);
    } else if (!(value === null ? nullable === "null" : typeMatches(value, type))) {
      problems.push(`${where}.${key}: ${JSON.stringify(value)?.slice(0, 40)} is not ${fieldSpec}`);
    }
  }
  return problems;
}

// What is wrong with `msg` sent in `direction` ("to-worker" or "to-page"): [] when it follows the
// protocol.
export function problems(direction, msg) {
  const messages = DIRECTIONS[direction];
  if (!msg || typeof msg.type !== "string" || !Object.hasOwn(messages, msg.type)) {
    return [`${direction}: message type ${JSON.stringify(msg && msg.type)} is not in the protocol`];
  }
  const { type, ...fields } = msg;
  return fieldProblems(fields, messages[type], `${direction} ${type}`);
}

export class ProtocolError extends Error {}

// Send {type, ...fields} to `target` (a Worker, or the worker's global scope), checked first;
// `transfer`: buffers moved, not copied.
export function post(target, direction, type, fields = {}, transfer = []) {
  const msg = { type, ...fields };
  const found = problems(direction, msg);
  if (found.length) throw new ProtocolError(found.join("; "));
  target.postMessage(msg, transfer);
}
