// The output (main thread): the prompt echoed, then the generated text as it streams. Text is
// appended as Text nodes (never parsed as HTML) to the last of a series of small chunks, so a token
// costs the layout of one chunk, not of the whole transcript; each flush of new text goes into a
// new live region entry only for assistive technology (aria-live on what is new, not the box).
// While generating, the box follows the end of the text unless the user scrolls up; it resumes
// following when they scroll back to the end.

const CHUNK_CHARS = 2000;  // a new chunk element past this many characters
const FOLLOW_SLACK_PX = 24;  // "at the end" when this close to the bottom

export class Transcript {
  constructor(root) {
    this.box = root.querySelector(".transcript");
    this.promptEcho = root.getElementById("prompt-echo");
    this.output = root.getElementById("output");
    this.chunk = null;  // the element new text goes into
    this.chunkChars = 0;
    this.following = true;
    this.box.addEventListener("scroll", () => {
      const fromEnd = this.box.scrollHeight - this.box.clientHeight - this.box.scrollTop;
      this.following = fromEnd <= FOLLOW_SLACK_PX;
    });
  }

  // A new generation: the prompt, and no output yet.
  start(prompt) {
    this.promptEcho.textContent = prompt;
    this.output.textContent = "";
    this.chunk = null;
    this.following = true;
    this.box.scrollTop = this.box.scrollHeight;
  }

  append(text) {
    if (!text) return;
    if (this.chunk === null || this.chunkChars >= CHUNK_CHARS) {
      this.chunk = document.createElement("span");
      this.chunk.className = "chunk";
      this.output.append(this.chunk);
      this.chunkChars = 0;
    }
    this.chunk.append(text);  // a Text node: never parsed as HTML
    this.chunkChars += text.length;
    if (this.following) this.box.scrollTop = this.box.scrollHeight;
  }

  // The whole text: prompt and output.
  text() {
    return this.promptEcho.textContent + this.output.textContent;
  }

  clear() {
    this.promptEcho.textContent = "";
    this.output.textContent = "";
    this.chunk = null;
  }
}
