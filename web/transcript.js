// The output (main thread): the prompt echoed, then the generated text as it streams. Text is
// appended as Text nodes (never parsed as HTML) to the last of a series of chunks, each a block
// of about CHUNK_CHARS characters that starts at a line end, so a token costs the layout of one
// chunk, not of the whole transcript. Only the output is a live region (aria-live on the new
// text, not the prompt), and the box is aria-busy while generating.
// While generating, the box follows the end of the text unless the user scrolls up; it resumes
// following when they scroll back to the end.

const CHUNK_CHARS = 2000;  // a new chunk element at the first line end past this many characters
const PARAGRAPH_CHARS = 8000;  // or at a space past this many, when no line end comes
const FOLLOW_SLACK_PX = 24;  // "at the end" when this close to the bottom

export class Transcript {
  constructor(root) {
    this.box = root.querySelector(".transcript");
    this.promptEcho = root.getElementById("prompt-echo");
    this.output = root.getElementById("output");
    this.chunk = null;  // the element new text goes into
    this.chunkChars = 0;
    this.following = true;
    this.scrollPending = false;
    this.lastScrollTop = 0;
    this.box.addEventListener("scroll", () => {
      const top = this.box.scrollTop;
      const fromEnd = this.box.scrollHeight - this.box.clientHeight - top;
      // Only a move up stops following: our own scroll (followSoon) goes down, and its event can
      // arrive after more text has made the box taller, far from the end through no one's doing.
      // A move down that ends near the end resumes it: near, because the text goes on growing
      // while a wheel or a drag scrolls towards where the end was.
      const near = top > this.lastScrollTop ? Math.max(FOLLOW_SLACK_PX, this.box.clientHeight / 4) : FOLLOW_SLACK_PX;
      if (fromEnd <= near) this.following = true;
      else if (top < this.lastScrollTop) this.following = false;
      this.lastScrollTop = top;
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
    // A full chunk ends at a line end, and the next starts as a block of its own, so that layout
    // of new text is confined to it (the text reads the same: the line had ended anyway). Text with
    // no line end for PARAGRAPH_CHARS (a random model's) is cut at a space instead: one extra line
    // break per PARAGRAPH_CHARS characters, against a layout cost that grows with the paragraph.
    let cut = this.chunkChars >= CHUNK_CHARS ? text.lastIndexOf("\n") : -1;
    if (cut < 0 && this.chunkChars >= PARAGRAPH_CHARS) cut = text.lastIndexOf(" ");
    if (cut >= 0) {
      this.chunk.append(text.slice(0, cut + 1));
      this.newChunk("chunk block");
      text = text.slice(cut + 1);
    }
    if (text) this.chunk.append(text);  // a Text node: never parsed as HTML
    this.chunkChars += text.length;
    this.followSoon();
  }

  // One token of the token view (token-view.js): its element in place of its text, chunked the
  // same way (a new chunk after a token that ends a line, past CHUNK_CHARS).
  appendToken(element, text) {
    if (this.chunk === null) this.newChunk("chunk");
    this.chunk.append(element);
    this.chunkChars += text.length;
    if ((this.chunkChars >= CHUNK_CHARS && text.endsWith("\n"))
      || (this.chunkChars >= PARAGRAPH_CHARS && text.endsWith(" "))) this.newChunk("chunk block");
    this.followSoon();
  }

  // Scroll to the end once per frame, not per message: reading scrollHeight forces a layout.
  followSoon() {
    if (!this.following || this.scrollPending) return;
    this.scrollPending = true;
    requestAnimationFrame(() => {
      this.scrollPending = false;
      if (this.following) this.box.scrollTop = this.box.scrollHeight;
    });
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
