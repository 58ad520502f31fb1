// The benchmark's peer (bench/peer.py calls window.runWllama): wllama, from its own npm files served
// by bench/peer_site.py, loads one .gguf and decodes greedily, streaming; every chunk's arrival is
// recorded so that its decode speed is timed like our page's token messages.
import { Wllama } from "/wllama/index.js";

const WASM = new URL("/wllama/wasm/wllama.wasm", location.href).href;

// {url, nThreads, nTokens, prompt, bannedIds}: bannedIds are tokens the sampler must never pick
// (bench/peer_vocab.py: a random model emits tokens that are not UTF-8 alone, which wllama refuses).
window.runWllama = async ({ url, nThreads, nTokens, prompt, bannedIds }) => {
  const wllama = new Wllama({ default: WASM }, { suppressNativeLog: true });
  wllama.setCompat(null);  // no CDN: the compat build is fetched from one
  const began = performance.now();
  const blob = await (await fetch(url)).blob();
  const fetched = performance.now();
  await wllama.loadModel([blob], { n_threads: nThreads, n_ctx: 512, n_batch: 512, n_gpu_layers: 0 });
  const loaded = performance.now();
  const arrivals = [];
  let timings = null;
  let text = "";
  await wllama.createCompletion({
    prompt, max_tokens: nTokens, temperature: 0, ignore_eos: true, stream: true,
    logit_bias: Object.fromEntries(bannedIds.map((id) => [String(id), -1e9])),
    onData: (chunk) => {
      arrivals.push(performance.now());
      text += chunk.choices[0]?.text ?? "";
      if (chunk.timings) timings = chunk.timings;
    },
  });
  const result = {
    fetch_ms: fetched - began, load_ms: loaded - fetched, arrivals, timings, text,
    isolated: self.crossOriginIsolated, multithread: wllama.isMultithread(),
  };
  await wllama.exit();
  return result;
};
document.getElementById("state").textContent = "ready";
