// The generation loop (worker side): a prompt in, text out to the page a step at a time. The loop
// yields to the event loop after every token (and every block of the prompt), so a Stop message
// lands between two tokens: no SharedArrayBuffer, no special headers.

import { heapBytes, pythonObjects } from "./runtime.js";
import { TokenRecorder, setRecording } from "./token-records.js";

// Send text to the page at most this often (and at the end). Every message makes the page's main
// thread and compositor lay out and paint; that costs a single worker nothing (the other core is
// idle), but a model split across workers has every core busy (shard-leader.js: SHARDED_FLUSH_MS).
const TOKEN_FLUSH_MS = 30;

// Yield to the event loop (so a stop message can run) without setTimeout's 4 ms clamp.
const yieldChannel = new MessageChannel();
let resumeAfterYield = null;
yieldChannel.port1.onmessage = () => resumeAfterYield();
function yieldToEventLoop() {
  return new Promise((resolve) => {
    resumeAfterYield = resolve;
    yieldChannel.port2.postMessage(null);
  });
}

// One request that generates: the page's Stop sets stopRequested, and the loop ends before the
// next token. stoppedAt: tokens generated when Stop arrived.
export class Generation {
  constructor(id) {
    this.id = id;
    this.stopRequested = false;
    this.stoppedAt = null;
  }

  stop(session) {
    if (this.stopRequested) return;
    this.stopRequested = true;
    this.stoppedAt = session.n_generated;
  }
}

// The loaded model's Python objects: one Session per model keeps the state after the prompt, so
// the same prompt again (Regenerate) skips the prefill. Its methods are looked up once.
export class LoadedModel {
  constructor(name, model, tokenizer, session) {
    this.name = name;
    this.model = model;
    this.tokenizer = tokenizer;
    this.session = session;
    this.begin = session.begin;
    this.prefillStep = session.prefill_step;
    this.advance = session.advance;
    this.extend = session.extend;
    this.flushMs = TOKEN_FLUSH_MS;
  }

  // Call one of the session's methods that steps the model (ShardedLoadedModel: maybe a promise).
  step(method, ...args) {
    return method(...args);
  }

  release() {
    for (const proxy of [this.extend, this.advance, this.prefillStep, this.begin, this.session,
      this.tokenizer, this.model]) {
      proxy.destroy();
    }
  }
}

// send(type, fields) posts to the page; `generation` is this request's Generation.
export async function generate(runtime, loaded, generation, msg, send) {
  const { session, begin, prefillStep } = loaded;
  setRecording(session, msg.inspect === true);
  begin.callKwargs(msg.prompt, msg.params);
  // The prompt is tokenized a slice at a time, then run a block at a time, with a yield between
  // steps, so Stop lands within one step of a long prompt too (streamTokens then reports it
  // stopped, with nothing generated).
  while (!await loaded.step(prefillStep)) {
    await yieldToEventLoop();
    if (generation.stopRequested) break;
  }
  send("started", { id: msg.id, n_prompt: session.n_prompt, prefill_ms: session.prefill_seconds * 1000,
    n_prefilled: session.n_prefilled, prompt_state_reused: session.prompt_state_reused, state_nbytes: session.state_nbytes,
    continued: false });
  await streamTokens(runtime, loaded, generation, send, 0);
}

// Resume the latest generation (stopped, or ended by length) where it ended: the session keeps
// its state, sampler and detokenizer, so the text is what one uninterrupted generation gives.
export async function continueGeneration(runtime, loaded, generation, msg, send) {
  const { session, extend } = loaded;
  const before = session.n_generated;
  extend(msg.more_tokens);
  sendContinued(send, msg.id, session);
  await streamTokens(runtime, loaded, generation, send, before);
}

// The started message of a request that runs no prompt (Continue, a branch): the state is kept.
export function sendContinued(send, id, session) {
  send("started", { id, n_prompt: session.n_prompt, prefill_ms: 0, n_prefilled: 0,
    prompt_state_reused: true, state_nbytes: session.state_nbytes, continued: true });
}

// Advance one token at a time until done or Stop, sending text to the page; `before`: tokens the
// session had generated when this request began (tokens/s counts this request's only). An
// inspected generation's messages also carry each token's record (token-records.js).
export async function streamTokens(runtime, loaded, generation, send, before) {
  const { session, advance } = loaded;
  const recorder = TokenRecorder.forSession(runtime, session);
  const records = () => (recorder ? { tokens: recorder.take() } : {});
  const id = generation.id;
  const decodeStart = performance.now();
  let pending = "";
  let lastFlush = decodeStart;
  const rate = () => (session.n_generated - before)
    / Math.max(1e-3, (performance.now() - decodeStart) / 1000);
  while (!session.done && !generation.stopRequested) {
    const text = await loaded.step(advance, 1);
    pending += text;
    if (recorder) recorder.push(text);
    const now = performance.now();
    if (now - lastFlush >= loaded.flushMs) {
      send("token", { id, text: pending, n_generated: session.n_generated,
        tokens_per_second: rate(), wasm_heap_bytes: heapBytes(runtime), ...records() });
      pending = "";
      lastFlush = now;
    }
    await yieldToEventLoop();
  }
  let reason = "eos";
  if (generation.stopRequested) reason = "stopped";
  else if (session.n_generated >= session.max_new_tokens) reason = "length";
  send("done", { id, reason, text: pending, n_generated: session.n_generated,
    tokens_per_second: rate(), wasm_heap_bytes: heapBytes(runtime),
    tokens_after_stop: reason === "stopped" ? session.n_generated - generation.stoppedAt : null,
    python_objects: pythonObjects(runtime), ...records() });
}
