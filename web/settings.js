// The sampling settings form (main thread): reads and validates each field, marking a bad one
// (aria-invalid and a message next to it) so that nothing invalid is ever sent to the worker.
// The defaults are the package's (SamplingParams, through facts.js); presets are named sets of
// values on top. The fields and the prompt are kept across reloads (localStorage), and a link
// (?prompt=…&temperature=…) opens the page with given ones.

import facts from "./facts.js";

// [input id, message key, integer?, lowest, highest, lowest allowed (false: > lowest)]
const FIELDS = [
  ["max-new-tokens", "max_new_tokens", true, 1, 100000, true],
  ["temperature", "temperature", false, 0, 5, true],
  ["top-k", "top_k", true, 0, 1e9, true],
  ["top-p", "top_p", false, 0, 1, false],
  ["repetition-penalty", "repetition_penalty", false, 1, 5, true],
  ["seed", "seed", true, 0, 2 ** 32 - 1, true],
];
const SEED_MAX = 2 ** 32 - 1;
const STORAGE_KEY = "mamba-wasm-settings-v1";
const MAX_NEW_TOKENS_DEFAULT = "200";

// The package's defaults as field values (an absent seed: the field left empty, a random seed).
const DEFAULTS = {
  "max-new-tokens": MAX_NEW_TOKENS_DEFAULT,
  temperature: String(facts.sampling_defaults.temperature),
  "top-k": String(facts.sampling_defaults.top_k),
  "top-p": String(facts.sampling_defaults.top_p),
  "repetition-penalty": String(facts.sampling_defaults.repetition_penalty),
};

// Named sets of values over the defaults: what each is for is in its name.
export const PRESETS = {
  "Package defaults (plain sampling)": {},
  "Focused (top-k 40, top-p 0.9, penalty 1.1)": { temperature: "0.6", "top-k": "40", "top-p": "0.9",
    "repetition-penalty": "1.1" },
  "Creative (temperature 1.0, top-p 0.95)": { temperature: "1.0", "top-k": "0", "top-p": "0.95",
    "repetition-penalty": "1.05" },
  "Greedy (always the likeliest token)": { temperature: "0", "top-k": "0", "top-p": "1",
    "repetition-penalty": "1.1" },
};
const CUSTOM = "Custom";

// A number written plainly ("12", "0.5", "-3"): not "1e3", not "0x10", not "" (what
// Number() would also accept).
const PLAIN_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)$/;

function labelOf(input) {
  return input.closest("label").querySelector("span").textContent.trim();
}

function rangeText(integer, lowest, highest, lowestAllowed) {
  const kind = integer ? "a whole number" : "a number";
  if (!lowestAllowed) return `${kind} above ${lowest} and at most ${highest}`;
  return `${kind} from ${lowest} to ${highest}`;
}

// The value of one field, or an error message.
function parseField(input, integer, lowest, highest, lowestAllowed) {
  const text = input.value.trim();
  const range = rangeText(integer, lowest, highest, lowestAllowed);
  if (!PLAIN_NUMBER.test(text)) {
    return { error: `${labelOf(input)} must be ${range}, written plainly (got ${JSON.stringify(text)}).` };
  }
  const value = Number(text);
  const inRange = (lowestAllowed ? value >= lowest : value > lowest) && value <= highest;
  if ((integer && !Number.isInteger(value)) || !inRange) {
    return { error: `${labelOf(input)} must be ${range} (got ${text}).` };
  }
  return { value };
}

// A random seed for a run whose seed field is empty.
export function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0] % (SEED_MAX + 1);
}

export class Settings {
  // prompt: the prompt textarea, kept with the settings.
  constructor(root, prompt) {
    this.prompt = prompt;
    this.inputs = new Map(FIELDS.map(([id]) => [id, root.getElementById(id)]));
    this.preset = root.getElementById("preset");
    this.preset.replaceChildren(...[...Object.keys(PRESETS), CUSTOM].map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    }));
    this.preset.addEventListener("change", () => {
      if (this.preset.value !== CUSTOM) this.apply({ ...DEFAULTS, ...PRESETS[this.preset.value] });
      this.save();
    });
    for (const input of this.inputs.values()) {
      input.addEventListener("input", () => {
        this.mark(input, null);
        this.showPreset();
        this.save();
      });
    }
    prompt.addEventListener("input", () => this.save());
    this.apply(DEFAULTS);
    this.restore();
    this.showPreset();
  }

  // Set fields from {input id: text}; the prompt from values.prompt.
  apply(values) {
    for (const [id, input] of this.inputs) {
      if (id in values) {
        input.value = values[id];
        this.mark(input, null);
      }
    }
    if (typeof values.prompt === "string") this.prompt.value = values.prompt;
  }

  // {input id: text, prompt}: what the form holds now.
  values() {
    const values = { prompt: this.prompt.value };
    for (const [id, input] of this.inputs) values[id] = input.value;
    return values;
  }

  // The preset whose values the fields hold, else Custom.
  showPreset() {
    const now = this.values();
    const match = Object.keys(PRESETS).find((name) => Object.entries({ ...DEFAULTS, ...PRESETS[name] })
      .every(([id, value]) => Number(now[id]) === Number(value) && now[id].trim() !== ""));
    this.preset.value = match ?? CUSTOM;
  }

  save() {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(this.values()));
    } catch {
      // storage disabled or full: settings simply are not kept
    }
  }

  // Saved values, then the page's address (?prompt=…&temperature=…): a shared link wins.
  restore() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "{}");
      if (saved && typeof saved === "object") this.apply(saved);
    } catch {
      // nothing usable saved
    }
    const query = new URLSearchParams(location.search);
    const fromLink = {};
    for (const [id] of FIELDS) {
      const key = id.replaceAll("-", "_");
      if (query.has(key)) fromLink[id] = query.get(key);
    }
    if (query.has("prompt")) fromLink.prompt = query.get("prompt");
    this.apply(fromLink);
  }

  // A link to this page with the prompt and the settings.
  shareLink() {
    const url = new URL(location.href);
    url.search = "";
    const query = new URLSearchParams();
    const model = new URLSearchParams(location.search).get("model");
    if (model) query.set("model", model);
    query.set("prompt", this.prompt.value);
    for (const [id, input] of this.inputs) {
      if (input.value.trim() !== "") query.set(id.replaceAll("-", "_"), input.value.trim());
    }
    url.search = query.toString();
    return url.href;
  }

  // Show `error` next to `input` (null: clear it).
  mark(input, error) {
    const messageId = `${input.id}-error`;
    let message = document.getElementById(messageId);
    if (error === null) {
      input.removeAttribute("aria-invalid");
      if (message) message.remove();
      input.removeAttribute("aria-describedby");
      return;
    }
    input.setAttribute("aria-invalid", "true");
    if (!message) {
      message = document.createElement("span");
      message.id = messageId;
      message.className = "field-error";
      message.dataset.testid = "field-error";
      message.setAttribute("role", "alert");
      input.after(message);
    }
    message.textContent = error;
    input.setAttribute("aria-describedby", messageId);
  }

  // {message key: value} of every field, or null after marking each invalid one (focus on the
  // first). An empty seed field means a fresh random seed.
  read() {
    const params = {};
    let firstBad = null;
    for (const [id, key, integer, lowest, highest, lowestAllowed] of FIELDS) {
      const input = this.inputs.get(id);
      if (id === "seed" && input.value.trim() === "") {
        this.mark(input, null);
        params.seed = randomSeed();
        continue;
      }
      const { value, error } = parseField(input, integer, lowest, highest, lowestAllowed);
      this.mark(input, error ?? null);
      if (error) firstBad ??= input;
      else params[key] = value;
    }
    if (firstBad) {
      if (firstBad.closest("details")) firstBad.closest("details").open = true;
      firstBad.focus();
      return null;
    }
    return params;
  }
}
