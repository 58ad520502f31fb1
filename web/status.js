// The status bar (main thread): one line of status, a labelled progress bar for downloads, and
// the error (role="alert"). The bar sticks to the top of the view, so what it says is always in
// sight. Everything shown is set with textContent.

const megabytes = (n) => (n / 1e6).toFixed(1);

export class StatusBar {
  constructor(root) {
    this.status = root.getElementById("status");
    this.progress = root.getElementById("progress");
    this.progressText = root.getElementById("progress-text");
    this.error = root.getElementById("error");
  }

  set(text) {
    this.status.textContent = text;
  }

  showError(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }

  clearError() {
    this.error.textContent = "";
    this.error.hidden = true;
  }

  // A progress message from the worker: bytes of total, or busy (total 0).
  showProgress(msg) {
    if (this.status.textContent !== msg.text) this.set(msg.text);
    if (msg.total > 0) {
      this.progress.max = msg.total;
      this.progress.value = msg.loaded;
      this.progressText.textContent = `${megabytes(msg.loaded)} of ${megabytes(msg.total)} MB`;
    } else {
      this.progress.removeAttribute("value");  // indeterminate while Python starts
      this.progressText.textContent = "";
    }
  }

  resetProgress() {
    this.progress.value = 0;
    this.progressText.textContent = "";
  }
}
