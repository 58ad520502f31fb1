// The web worker's dispatch (a module worker): requests from the page run one at a time, in
// order; stop and cancel act at once on the request they name; the saved-model list is answered
// at once. Every message in and out is listed in protocol.js. The work itself is elsewhere:
// loading.js (download/verify/cache through downloads.js and model-store.js, runtime start through
// runtime.js), generation.js (the generation loop).

import { Generation, continueGeneration, generate } from "./generation.js";
import { branch, probe, score } from "./inspect.js";
import { WorkerState, load } from "./loading.js";
import { deleteSavedModel, listSavedModels } from "./model-store.js";
import { post, problems } from "./protocol.js";
import { describeError } from "./runtime.js";

const state = new WorkerState();
let loading = null;     // {id, controller} while a load request runs: its Cancel aborts the controller
let generation = null;  // the Generation of the generate/continue request that runs

const send = (type, fields) => post(self, "to-page", type, fields);

// ---- liveness: the page learns at once if this worker dies ---------------------------------------

// The page names the worker; the worker holds a Web Lock of that name for its whole life. A lock is
// released when its holder ends, however it ends (terminated, crashed, killed for memory), so the
// page, queued on the same lock, is told even while Python keeps this thread busy.
if (self.name && self.navigator && navigator.locks) {
  navigator.locks.request(self.name, () => {
    send("alive");
    return new Promise(() => {});  // never released while the worker lives
  });
}

// ---- requests ----------------------------------------------------------------------------------

async function loadRequest(msg) {
  loading = { id: msg.id, controller: new AbortController() };
  try {
    await load(state, msg, send, loading.controller.signal);
  } finally {
    loading.controller.abort();  // downloads still running after another file failed: stop them
    loading = null;
  }
}

function generationRequest(run) {
  return async (msg) => {
    if (state.loaded === null) throw new Error("No model is loaded yet.");
    generation = new Generation(msg.id);
    try {
      await run(state.runtime, state.loaded, generation, msg, send);
    } finally {
      generation = null;
    }
  };
}

// A request on the loaded model that answers at once (the inspection views' score and probe).
function modelRequest(run) {
  return async (msg) => {
    if (state.loaded === null) throw new Error("No model is loaded yet.");
    run(state.runtime, state.loaded, msg, send);
  };
}

const requests = {
  load: loadRequest,
  generate: generationRequest(generate),
  continue: generationRequest(continueGeneration),
  branch: generationRequest(branch),
  score: modelRequest(score),
  probe: modelRequest(probe),
};
let queue = Promise.resolve();

// The saved models: listed and deleted at once, not behind a running load.
async function answerSaved(msg) {
  try {
    if (msg.type === "saved-delete") await deleteSavedModel(msg.base);
    send("saved", { id: msg.id, models: await listSavedModels() });
  } catch (error) {
    send("saved", { id: msg.id, models: [], message: describeError(state.runtime, error) });
  }
}

self.onmessage = (event) => {
  const msg = event.data;
  const wrong = problems("to-worker", msg);
  if (wrong.length) {  // a page out of step with this worker: say so rather than guess
    send("error", { id: typeof msg.id === "number" ? msg.id : -1, during: String(msg.type),
      message: `Protocol error: ${wrong.join("; ")}` });
    return;
  }
  if (msg.type === "cancel") {
    if (loading && loading.id === msg.id) loading.controller.abort();
    return;
  }
  if (msg.type === "saved-list" || msg.type === "saved-delete") {
    answerSaved(msg);
    return;
  }
  if (msg.type === "stop") {
    if (generation && generation.id === msg.id) generation.stop(state.loaded.session);
    return;
  }
  const handler = requests[msg.type];
  queue = queue.then(() => handler(msg)).catch((error) => {
    if (error && error.name === "AbortError") {
      send("cancelled", { id: msg.id, during: msg.type });
      return;
    }
    console.error(error);
    send("error", { id: msg.id, during: msg.type, message: describeError(state.runtime, error) });
  });
};
