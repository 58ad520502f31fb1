// The state view (main thread): what Mamba's selective state did on the text in the output, per
// layer and token, drawn on canvases (one cell per layer x token, never a DOM node per cell):
//   Δ     the mean time step: large Δ writes the token into the state, small Δ lets it pass by
//   kept  mean exp(Δ·A): the share of the state carried over from the token before (1: all kept)
// The worker runs the text through the model with a Probe (mamba_wasm/page_views.py) only while
// this view is open: closed, it costs nothing. Hovering a column (or the arrow keys on the
// focused map) names its token; PNG and CSV export what is drawn.

const CELL_W = 8;  // px per token
const CELL_H = 12;  // px per layer
// Viridis, five stops: dark (low) to yellow (high); readable by most colour-blind readers.
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function colourAt(t) {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  return STOPS[i].map((c, k) => Math.round(c + f * (STOPS[i + 1][k] - c)));
}

// (value -> 0..1) over the values' range, on a log scale when `log` (Δ spans decades).
function scaler(rows, log) {
  const map = log ? (v) => Math.log(Math.max(v, 1e-12)) : (v) => v;
  const all = rows.flat().map(map);
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  return { lo: Math.min(...rows.flat()), hi: Math.max(...rows.flat()),
    scale: (v) => (hi > lo ? (map(v) - lo) / (hi - lo) : 0.5) };
}

// rows: (tokens, layers); layer 0 at the top, tokens left to right.
function draw(canvas, rows, nLayer, log) {
  canvas.width = rows.length * CELL_W;
  canvas.height = nLayer * CELL_H;
  canvas.dataset.tokens = String(rows.length);
  canvas.dataset.layers = String(nLayer);
  const context = canvas.getContext("2d");
  const image = context.createImageData(canvas.width, canvas.height);
  const { scale, lo, hi } = scaler(rows, log);
  rows.forEach((row, t) => row.forEach((value, layer) => {
    const [r, g, b] = colourAt(scale(value));
    for (let y = layer * CELL_H; y < (layer + 1) * CELL_H; y++) {
      for (let x = t * CELL_W; x < (t + 1) * CELL_W; x++) {
        const at = 4 * (y * canvas.width + x);
        image.data[at] = r;
        image.data[at + 1] = g;
        image.data[at + 2] = b;
        image.data[at + 3] = 255;
      }
    }
  }));
  context.putImageData(image, 0, 0);
  return { lo, hi };
}

const fmt = (v) => (Math.abs(v) >= 0.01 || v === 0 ? v.toFixed(3) : v.toExponential(2));

export class StateView {
  // actions: {probe(text): the request's id}
  constructor(root, transcript, actions) {
    this.transcript = transcript;
    this.actions = actions;
    this.details = root.getElementById("state-view");
    this.delta = root.getElementById("state-delta");
    this.kept = root.getElementById("state-kept");
    this.caption = root.getElementById("state-token");
    this.ranges = root.getElementById("state-ranges");
    this.record = null;  // the latest probed message
    this.column = -1;
    this.waiting = null;  // id of the probe request in flight
    this.probedText = null;
    this.details.addEventListener("toggle", () => this.refresh());
    for (const canvas of [this.delta, this.kept]) {
      canvas.addEventListener("mousemove", (event) => this.select(Math.floor(event.offsetX / CELL_W)));
    }
    this.delta.addEventListener("keydown", (event) => this.key(event));
    root.getElementById("state-png").addEventListener("click", () => this.exportPng());
    root.getElementById("state-csv").addEventListener("click", () => this.exportCsv());
  }

  // The output changed and the page is idle: probe it again while the view is open.
  refresh() {
    if (!this.details.open || document.body.dataset.state !== "ready") return;
    const text = this.transcript.text();
    if (!text || text === this.probedText) return;
    this.probedText = text;
    this.caption.textContent = "Running the text through the model with a probe…";
    this.waiting = this.actions.probe(text);
  }

  // The worker's probed message.
  show(msg) {
    if (msg.id !== this.waiting) return;
    this.waiting = null;
    this.record = msg;
    const delta = draw(this.delta, msg.delta, msg.n_layer, true);
    const kept = draw(this.kept, msg.kept, msg.n_layer, false);
    this.ranges.textContent = `${msg.ids.length} tokens x ${msg.n_layer} layers (layer 1 at the top). `
      + `Δ from ${fmt(delta.lo)} to ${fmt(delta.hi)} (log scale), kept from ${fmt(kept.lo)} to ${fmt(kept.hi)}: `
      + "dark is low, yellow high.";
    this.column = -1;
    this.caption.textContent = "Hover a column, or focus the map and use the arrow keys, to see its token.";
  }

  select(column) {
    const record = this.record;
    if (!record || column < 0 || column >= record.ids.length) return;
    this.column = column;
    const mean = (row) => row.reduce((a, b) => a + b, 0) / row.length;
    const delta = record.delta[column];
    const top = delta.indexOf(Math.max(...delta));
    this.caption.textContent = `Token ${column + 1}: ${JSON.stringify(record.pieces[column])} (id ${record.ids[column]}) · `
      + `Δ mean ${fmt(mean(delta))}, largest in layer ${top + 1} (${fmt(delta[top])}) · `
      + `kept mean ${fmt(mean(record.kept[column]))}`;
    this.caption.dataset.column = String(column);
  }

  key(event) {
    if (!this.record) return;
    const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -Infinity, End: Infinity };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const last = this.record.ids.length - 1;
    this.select(Math.max(0, Math.min(last, (this.column < 0 ? 0 : this.column) + moves[event.key])));
    const scroller = this.delta.parentElement;
    const x = this.column * CELL_W;
    if (x < scroller.scrollLeft || x > scroller.scrollLeft + scroller.clientWidth - CELL_W) {
      scroller.scrollLeft = x - scroller.clientWidth / 2;
    }
  }

  save(blob, extension) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = `mamba-state-${new Date().toISOString().slice(0, 19).replaceAll(":", "-")}.${extension}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // Both maps in one image: Δ above, kept below, a gap between.
  exportPng() {
    if (!this.record) return;
    const gap = CELL_H;
    const canvas = document.createElement("canvas");
    canvas.width = this.delta.width;
    canvas.height = this.delta.height + gap + this.kept.height;
    const context = canvas.getContext("2d");
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(this.delta, 0, 0);
    context.drawImage(this.kept, 0, this.delta.height + gap);
    canvas.toBlob((blob) => this.save(blob, "png"), "image/png");
  }

  // One row per token and layer: token (1-based), id, its text, layer (1-based), Δ mean, kept.
  exportCsv() {
    if (!this.record) return;
    const quote = (text) => `"${text.replaceAll('"', '""')}"`;
    const lines = ["token,id,text,layer,delta_mean,kept"];
    this.record.ids.forEach((id, t) => {
      for (let layer = 0; layer < this.record.n_layer; layer++) {
        lines.push([t + 1, id, quote(this.record.pieces[t]), layer + 1, this.record.delta[t][layer],
          this.record.kept[t][layer]].join(","));
      }
    });
    this.save(new Blob([`${lines.join("\n")}\n`], { type: "text/csv;charset=utf-8" }), "csv");
  }
}
