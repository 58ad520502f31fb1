// The token view (main thread): with "Show tokens" on, a generation is inspected (the worker
// records each token's probabilities, token-records.js) and each generated token is an element
// (data-testid=token, data-id, data-p: probability as sampled, data-p-model: under the raw model).
// Hovering, tapping or focusing a token shows its probabilities and the alternatives; picking one
// branches there (the text after it is generated again from the recurrent state at that token);
// Back returns to the previous branch. "Colour by probability" tints tokens by the raw model's
// probability. Off, a generation is plain text: nothing is recorded, no element per token.
// Listeners sit on the output and the popup (delegation), never one per token.

// Probability bands, least likely first: the class a token gets (tinted only when colouring).
const BANDS = [0.05, 0.2, 0.5, 0.8];

export function bandOf(probability) {
  const band = BANDS.findIndex((limit) => probability < limit);
  return `band${band < 0 ? BANDS.length : band}`;
}

const percent = (p) => (p === 0 ? "0%" : `${(100 * p).toFixed(p < 0.001 ? 3 : 1)}%`);
const shown = (text) => JSON.stringify(text);  // quotes, and \n for a line end

export class TokenView {
  // actions: {branch(position, token), requestState(): "ready" when a branch may start}
  constructor(root, transcript, actions) {
    this.transcript = transcript;
    this.actions = actions;
    this.output = root.getElementById("output");
    this.toggle = root.getElementById("token-view");
    this.colour = root.getElementById("colour-tokens");
    this.legend = root.getElementById("token-legend");
    this.popup = root.getElementById("token-popup");
    this.back = root.getElementById("branch-back");
    this.records = null;  // [{id, text, p, p_model, alts}] of the output, when it was inspected
    this.branches = [];  // for Back: [{position, token}] the token each branch replaced
    this.openIndex = -1;  // the token whose popup is open
    this.hideTimer = 0;
    this.closing = false;  // true while Escape hands focus back to the token
    this.toggle.addEventListener("change", () => this.render());
    this.colour.addEventListener("change", () => this.showColours());
    this.back.addEventListener("click", () => this.goBack());
    this.output.addEventListener("mouseover", (event) => this.hover(event));
    this.output.addEventListener("mouseout", () => this.hideSoon());
    this.output.addEventListener("focusin", (event) => this.hover(event));
    this.output.addEventListener("click", (event) => this.hover(event));
    this.output.addEventListener("keydown", (event) => this.tokenKey(event));
    this.popup.addEventListener("mouseover", () => clearTimeout(this.hideTimer));
    this.popup.addEventListener("mouseout", () => this.hideSoon());
    this.popup.addEventListener("click", (event) => this.pick(event));
    this.popup.addEventListener("keydown", (event) => this.popupKey(event));
    root.addEventListener("click", (event) => {  // a tap elsewhere closes it (touch has no mouseout)
      if (this.openIndex >= 0 && !this.popup.contains(event.target)
        && !event.target.closest?.("[data-testid=token]")) this.close();
    });
    this.showColours();
  }

  get on() {
    return this.toggle.checked;
  }

  // The generate request's extra field: inspect only while the view is on.
  requestFields() {
    return this.on ? { inspect: true } : {};
  }

  // A new generation: no records yet (null unless it is inspected); a fresh branch history.
  start() {
    this.records = this.on ? [] : null;
    this.branches = [];
    this.close();
    this.back.hidden = true;
  }

  // The output is something else (a score): nothing to show as generated tokens.
  forget() {
    this.start();
    this.records = null;
  }

  // A token or done message: true when its text went in as token elements.
  append(msg) {
    if (!msg.tokens) return false;
    if (this.records === null) this.records = [];  // a request the page did not make (benchmarks)
    const first = this.records.length;
    this.records.push(...msg.tokens);
    if (!this.on) return false;
    msg.tokens.forEach((record, i) => this.appendToken(record, first + i));
    return true;
  }

  appendToken(record, index) {
    const element = document.createElement("span");
    element.className = `token ${bandOf(record.p_model)}${record.text.includes("\n") ? " line-end" : ""}`;
    element.tabIndex = 0;
    element.dataset.testid = "token";
    element.dataset.index = String(index);
    element.dataset.id = String(record.id);
    element.dataset.p = String(record.p);
    element.dataset.pModel = String(record.p_model);
    element.textContent = record.text;  // never parsed as HTML
    this.transcript.appendToken(element, record.text);
  }

  // The output again from the records: as tokens (view on) or as text (off).
  render() {
    this.close();
    this.back.hidden = !(this.on && this.branches.length);
    this.legend.hidden = !this.on;
    this.colour.disabled = !this.on;
    if (this.records === null) return;
    const scroll = this.transcript.box.scrollTop;
    this.transcript.start(this.transcript.promptEcho.textContent);
    if (this.on) this.records.forEach((record, i) => this.appendToken(record, i));
    else this.transcript.append(this.records.map((r) => r.text).join(""));
    this.transcript.box.scrollTop = scroll;
  }

  showColours() {
    this.output.classList.toggle("colour-by-p", this.colour.checked);
  }

  // ---- popup ---------------------------------------------------------------------------------

  hover(event) {
    const token = event.target.closest && event.target.closest("[data-testid=token]");
    if (!token || this.closing) return;
    clearTimeout(this.hideTimer);
    const index = Number(token.dataset.index);
    if (index !== this.openIndex) this.open(index, token);
  }

  hideSoon() {
    clearTimeout(this.hideTimer);
    if (this.popup.contains(document.activeElement)) return;
    this.hideTimer = setTimeout(() => this.close(), 400);
  }

  open(index, token) {
    const record = this.records[index];
    this.openIndex = index;
    const title = document.createElement("p");
    title.className = "popup-title";
    title.textContent = `Token ${index + 1}: ${shown(record.text)} (id ${record.id}) · `
      + `${percent(record.p)} as sampled · ${percent(record.p_model)} under the model`;
    const list = document.createElement("ol");
    list.className = "alternatives";
    for (const [id, text, p, pModel] of record.alts) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.dataset.testid = "alternative";
      button.dataset.tokenId = String(id);
      button.dataset.p = String(p);
      button.dataset.pModel = String(pModel);
      button.title = id === record.id ? "The token that was drawn" : "Branch: put this token here and generate the rest again";
      const name = document.createElement("span");
      name.className = "alt-text";
      name.textContent = shown(text);
      const figures = document.createElement("span");
      figures.className = "alt-p";
      figures.textContent = `${percent(p)} · ${percent(pModel)}`;
      button.append(name, figures);
      if (id === record.id) button.classList.add("drawn");
      item.append(button);
      list.append(item);
    }
    const head = document.createElement("p");
    head.className = "popup-head";
    head.textContent = "Alternatives: as sampled · under the model. Pick one to branch from here.";
    this.popup.replaceChildren(title, head, list);
    this.popup.hidden = false;
    this.place(token);
  }

  // Under the token (above it when the screen has room there and not below), never over it: a
  // popup over the hovered token would take the pointer from it and close.
  place(token) {
    const box = this.transcript.box.parentElement.getBoundingClientRect();
    const at = token.getBoundingClientRect();
    const width = Math.min(360, box.width - 8);
    this.popup.style.width = `${width}px`;
    this.popup.style.left = `${Math.max(4, Math.min(at.left - box.left, box.width - width - 4))}px`;
    const height = this.popup.offsetHeight;
    const fitsBelow = window.innerHeight - at.bottom > height + 8;
    const fitsAbove = at.top > height + 8 && at.top - box.top > height + 4;
    this.popup.style.top = `${fitsBelow || !fitsAbove ? at.bottom - box.top + 4 : at.top - box.top - height - 4}px`;
  }

  close() {
    clearTimeout(this.hideTimer);
    this.popup.hidden = true;
    this.openIndex = -1;
  }

  // Enter or Space on a token opens its alternatives (focus to the first); Escape closes.
  tokenKey(event) {
    const token = event.target.closest && event.target.closest("[data-testid=token]");
    if (!token) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.open(Number(token.dataset.index), token);
      this.popup.querySelector("button").focus();
    } else if (event.key === "Escape") {
      this.close();
    }
  }

  popupKey(event) {
    const buttons = [...this.popup.querySelectorAll("button")];
    const at = buttons.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      const token = this.output.querySelector(`[data-index="${this.openIndex}"]`);
      this.close();
      this.closing = true;  // focus goes back to the token without opening it again
      if (token) token.focus();
      this.closing = false;
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      buttons[(at + step + buttons.length) % buttons.length].focus();
    }
  }

  // ---- branches ------------------------------------------------------------------------------

  pick(event) {
    const button = event.target.closest("[data-testid=alternative]");
    if (!button || this.openIndex < 0) return;
    const position = this.openIndex;
    const token = Number(button.dataset.tokenId);
    const replaced = this.records[position].id;
    if (token === replaced || this.actions.requestState() !== "ready") return;
    this.close();
    this.branches.push({ position, token: replaced });
    this.actions.branch(position, token);
  }

  goBack() {
    const previous = this.branches.pop();
    if (!previous || this.actions.requestState() !== "ready") {
      if (previous) this.branches.push(previous);
      return;
    }
    this.back.hidden = true;
    this.actions.branch(previous.position, previous.token);
  }

  // The worker's branched message: the kept tokens, the new one, then the rest streams as usual.
  branched(msg) {
    const kept = this.records.slice(0, msg.position);
    const keptText = kept.map((r) => r.text).join("");
    msg.tokens[0].text = msg.text.slice(keptText.length);
    this.records = kept.concat(msg.tokens);
    this.render();
  }
}
