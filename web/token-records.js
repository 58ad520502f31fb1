// The token view's records (worker side): when the page asks for an inspected generation, the
// Session records each token's probabilities and keeps state snapshots (for branch); the
// generation loop hands each token's text here and sends the records with its token messages.
// Off, none of this runs: the Session computes nothing more than for a plain generation.

const SNAPSHOT_EVERY = 16;  // a state snapshot per 16 tokens: a branch replays at most 15 steps

let pageViews = null;  // mamba_wasm.page_views' functions, looked up once, on first use

// {tokenRecords, scoreRecord, probeRecord}: each returns JSON text (no proxy to release).
export function pageViewsModule(runtime) {
  if (pageViews === null) {
    const module = runtime.pyodide.pyimport("mamba_wasm.page_views");
    pageViews = { module, tokenRecords: module.token_records, scoreRecord: module.score_record,
      probeRecord: module.probe_record };  // borrowed from the module: it is kept for good too
  }
  return pageViews;
}

// Make the session record (for the token view) or not (the default: no cost).
export function setRecording(session, on) {
  session.record_probabilities = on;
  session.snapshot_every = on ? SNAPSHOT_EVERY : null;
}

// The records of the tokens generated from now on, a batch per message.
export class TokenRecorder {
  // A recorder when the session records probabilities, else null.
  static forSession(runtime, session) {
    return session.record_probabilities ? new TokenRecorder(runtime, session) : null;
  }

  constructor(runtime, session) {
    this.tokenRecords = pageViewsModule(runtime).tokenRecords;
    this.session = session;
    this.next = session.n_generated;  // the first generated token not sent yet
    this.texts = [];  // the text each of those tokens gave, in order
  }

  // One token was generated and gave `text` (advance(1)'s return).
  push(text) {
    this.texts.push(text);
  }

  // The records of the tokens pushed since the last take: [{id, text, p, p_model, alts}].
  take() {
    const records = JSON.parse(this.tokenRecords(this.session, this.next));
    records.forEach((record, i) => { record.text = this.texts[i] ?? ""; });
    this.next += records.length;
    this.texts = [];
    return records;
  }
}
