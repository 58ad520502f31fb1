// The output's tools (main thread): Copy (the prompt and the generated text), Download as .txt,
// Share link (this page with the prompt and the settings in its address), Clear.

export class OutputTools {
  // parts: {transcript: Transcript, settings: Settings, status: StatusBar, cleared(): the views
  // built on the text forget it}
  constructor(root, parts) {
    this.parts = parts;
    this.note = root.getElementById("tool-note");
    root.getElementById("copy").addEventListener("click", () => this.copy(parts.transcript.text(), "Copied the text."));
    root.getElementById("share").addEventListener("click", () => this.copy(parts.settings.shareLink(),
      "Copied a link with this prompt and these settings."));
    root.getElementById("download").addEventListener("click", () => this.download());
    root.getElementById("clear").addEventListener("click", () => {
      parts.transcript.clear();
      parts.cleared();
      this.say("Cleared.");
    });
  }

  say(text) {
    this.note.textContent = text;
  }

  async copy(text, done) {
    try {
      await navigator.clipboard.writeText(text);
      this.say(done);
    } catch (e) {
      this.say(`Could not copy (${e.message}): select the text and copy it instead.`);
    }
  }

  download() {
    const url = URL.createObjectURL(new Blob([this.parts.transcript.text()], { type: "text/plain;charset=utf-8" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `mamba-${new Date().toISOString().slice(0, 19).replaceAll(":", "-")}.txt`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    this.say("Downloaded.");
  }
}
