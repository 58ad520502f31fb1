// Score mode (main thread): Score (data-testid=score) sends the prompt box's text to the worker,
// which scores it under the raw model (mamba_wasm/scoring.py: no sampling filters); the output
// then shows each token tinted by its surprisal (nats, -log p: the same bands as the token view's
// probabilities), and the summary its nats/char and perplexity. <body data-last-score> holds the
// figures for tests: {ids, nll (nats, one per token after the first), tokens, chars, total_nats,
// nats_per_token, nats_per_char, perplexity}.

import { bandOf } from "./token-view.js";

export class ScoreView {
  // actions: {score(text): sends the request, false when the page is busy}
  constructor(root, transcript, actions) {
    this.transcript = transcript;
    this.actions = actions;
    this.prompt = root.getElementById("prompt");
    this.button = root.getElementById("score");
    this.summary = root.getElementById("score-summary");
    this.button.addEventListener("click", () => this.score());
  }

  setEnabled(on) {
    this.button.disabled = !on;
  }

  score() {
    const text = this.prompt.value;
    if (!text) return;
    this.actions.score(text);
  }

  // Any other use of the output hides the last score's summary.
  hide() {
    this.summary.hidden = true;
  }

  // The worker's scored message.
  show(msg) {
    const { totals } = msg;
    this.transcript.start("");
    msg.pieces.forEach((text, i) => {
      const nll = msg.nll[i];
      const element = document.createElement("span");
      element.className = `scored ${bandOf(Math.exp(-nll))}`;
      element.tabIndex = 0;
      element.dataset.testid = "scored-token";
      element.dataset.id = String(msg.ids[i + 1]);
      element.dataset.nll = String(nll);
      element.title = `${JSON.stringify(text)}: ${nll.toFixed(2)} nats (p ${(100 * Math.exp(-nll)).toFixed(1)}%)`;
      element.textContent = text;  // never parsed as HTML
      this.transcript.appendToken(element, text);
    });
    const perChar = totals.nats_per_char === null ? "–" : totals.nats_per_char.toFixed(3);
    this.summary.textContent = `Scored ${totals.tokens} tokens (${totals.chars} characters) under the raw model: `
      + `${perChar} nats/char · ${totals.nats_per_token.toFixed(3)} nats/token · perplexity `
      + `${totals.perplexity.toFixed(2)}. Red: surprising, clear: expected.`;
    this.summary.dataset.natsPerChar = String(totals.nats_per_char);
    this.summary.hidden = false;
    document.body.dataset.lastScore = JSON.stringify({ ids: msg.ids, nll: msg.nll, ...totals });
  }
}
