"""The peer's bench page on 127.0.0.1, cross-origin isolated: wllama's own npm files, the page and
the .gguf files, nothing else.

wllama runs llama.cpp with more than one thread only where SharedArrayBuffer exists, that is in a
cross-origin isolated page: every response here carries COOP `same-origin` and COEP `require-corp`.
This server is the bench's own (dist/'s server, build.py serve, sends neither header), so our page
is measured as users get it and the peer as its README asks to be served.
"""

import http.server
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = Path(__file__).resolve().parent / "peer_page"
WLLAMA_ESM = ROOT / "node_modules" / "@wllama" / "wllama" / "esm"  # the pinned devDependency's files
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
TYPES = {".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".gguf": "application/octet-stream"}


def resolve(url_path, ggufs):
    """The file a URL path names, or None: / and /peer.js from the page folder, /wllama/PATH from
    wllama's esm/ folder (no `..`), /gguf/NAME one of `ggufs` ({name: path})."""
    path = url_path.split("?", 1)[0]
    if path == "/":
        return PAGE / "index.html"
    if path == "/peer.js":
        return PAGE / "peer.js"
    if path.startswith("/gguf/"):
        return ggufs.get(path[len("/gguf/"):])
    if path.startswith("/wllama/"):
        parts = path[len("/wllama/"):].split("/")
        if all(part and part not in (".", "..") for part in parts):
            return WLLAMA_ESM.joinpath(*parts)
    return None


class PeerSite:
    """The server, started on a free port; `url` is its root."""

    def __init__(self, ggufs):
        if not (WLLAMA_ESM / "index.js").is_file():
            raise RuntimeError(f"{WLLAMA_ESM} is missing: run `npm ci` (wllama is a devDependency, for the bench)")
        site_files = dict(ggufs)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                file = resolve(self.path, site_files)
                if file is None or not Path(file).is_file():
                    self.send_error(404)
                    return
                self.send_response(200)
                for name, value in ISOLATION_HEADERS.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", TYPES.get(Path(file).suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(Path(file).stat().st_size))
                self.end_headers()
                with open(file, "rb") as source:
                    while block := source.read(1 << 20):
                        self.wfile.write(block)

            def log_message(self, format, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
