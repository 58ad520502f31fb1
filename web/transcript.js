// The output (main thread): the prompt echoed, then the generated text as it streams. Text is
// appended as Text nodes (never parsed as HTML) to the last of a series of chunks, each a block
// of about CHUNK_CHARS characters that starts at a line end, so a token costs the layout of one
// chunk, not of the whole transcript. Only the output is a live region (aria-live on the new
// text, not the prompt), and the box is aria-busy while generating.
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
    if (this.chunk === null) this.newChunk("chunk");  // inline: it continues the prompt's line
    const lineEnd = text.lastIndexOf("\n");
    if (this.chunkChars >= CHUNK_CHARS && lineEnd >= 0) {
      // A full chunk ends at a line end; the next starts as a block of its own, so that layout
      // of new text is confined to it (the text reads the same: the line had ended anyway).
      this.chunk.append(text.slice(0, lineEnd + 1));
      this.newChunk("chunk block");
      text = text.slice(lineEnd + 1);
    }
    if (text) this.chunk.append(text);  // a Text node: never parsed as HTML
    this.chunkChars += text.length;
    if (this.following) this.box.scrollTop = this.box.scrollHeight;
  }

  newChunk(className) {
    this.chunk = document.createElement("span");
    this.chunk.className = className;
    this.output.append(this.chunk);
    this.chunkChars = 0;
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
