// The inspection views' requests (worker side): branch an inspected generation at a token, score
// a text, probe a text's selective state. The Python is mamba_wasm/page_views.py (JSON out) and
// Session.branch; the loop that streams the regenerated text is generation.js's.

import { sendContinued, streamTokens } from "./generation.js";
import { TokenRecorder, pageViewsModule } from "./token-records.js";

// Generated token msg.position becomes msg.token, from the state snapshot at or before it (never
// the prompt again), and the text after it streams as for Continue.
export async function branch(runtime, loaded, generation, msg, send) {
  const { session } = loaded;
  const recorder = TokenRecorder.forSession(runtime, session);
  if (recorder === null) throw new Error("Only a generation made with the token view on can branch.");
  const text = await loaded.step(session.branch, msg.position, msg.token);
  recorder.next = msg.position;
  recorder.push("");  // the page knows the kept tokens' texts: the new one is the rest of `text`
  send("branched", { id: msg.id, position: msg.position, text, tokens: recorder.take() });
  sendContinued(send, msg.id, session);
  await streamTokens(runtime, loaded, generation, send, session.n_generated);
}

export function score(runtime, loaded, msg, send) {
  const record = JSON.parse(pageViewsModule(runtime).scoreRecord(loaded.model, loaded.tokenizer, msg.text));
  send("scored", { id: msg.id, ...record });
}

export function probe(runtime, loaded, msg, send) {
  const record = JSON.parse(pageViewsModule(runtime).probeRecord(loaded.model, loaded.tokenizer, msg.text));
  send("probed", { id: msg.id, ...record });
}
