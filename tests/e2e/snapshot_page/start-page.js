// The test page's only script: runStart(request) runs one start in a fresh module worker and
// resolves with what the worker reports.
window.runStart = (request) => new Promise((resolve) => {
  const worker = new Worker("start-worker.js", { type: "module" });
  worker.onmessage = (event) => {
    worker.terminate();
    resolve(event.data);
  };
  worker.onerror = (event) => resolve({ error: event.message || "the worker failed to start" });
  worker.postMessage(request);
});
