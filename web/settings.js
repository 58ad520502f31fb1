// The sampling settings form (main thread): reads and validates each field, marking a bad one
// (aria-invalid and a message next to it) so that nothing invalid is ever sent to the worker.

// [input id, message key, integer?, lowest, highest, lowest allowed (false: > lowest)]
const FIELDS = [
  ["max-new-tokens", "max_new_tokens", true, 1, 100000, true],
  ["temperature", "temperature", false, 0, 5, true],
  ["top-k", "top_k", true, 0, 1e9, true],
  ["top-p", "top_p", false, 0, 1, false],
  ["repetition-penalty", "repetition_penalty", false, 1, 5, true],
  ["seed", "seed", true, 0, 2 ** 32 - 1, true],
];

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
  if (!PLAIN_NUMBER.test(text)) return { error: `${labelOf(input)} must be ${range}.` };
  const value = Number(text);
  const inRange = (lowestAllowed ? value >= lowest : value > lowest) && value <= highest;
  if ((integer && !Number.isInteger(value)) || !inRange) {
    return { error: `${labelOf(input)} must be ${range} (got ${text}).` };
  }
  return { value };
}

export class Settings {
  constructor(root) {
    this.inputs = new Map(FIELDS.map(([id]) => [id, root.getElementById(id)]));
    for (const input of this.inputs.values()) {
      input.addEventListener("input", () => this.mark(input, null));
    }
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

  // {message key: value} of every field, or null after marking each invalid one (focus on the first).
  read() {
    const params = {};
    let firstBad = null;
    for (const [id, key, integer, lowest, highest, lowestAllowed] of FIELDS) {
      const input = this.inputs.get(id);
      const { value, error } = parseField(input, integer, lowest, highest, lowestAllowed);
      this.mark(input, error ?? null);
      if (error) firstBad ??= input;
      else params[key] = value;
    }
    if (firstBad) {
      firstBad.focus();
      return null;
    }
    return params;
  }
}
