"""`python3 build.py serve`'s handler against hostile requests (issue 15, item 6): a real server on
port 0 over a folder laid out like dist/, asked with raw HTTP so no client cleans the path first."""

import http.client
import os
import socket
import threading
import time

import pytest

import build

PAGE = """<!doctype html><html><head>
<meta http-equiv="Content-Security-Policy"
      content="default-src 'self';   script-src 'self' 'wasm-unsafe-eval'">
<title>t</title></head><body></body></html>"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """(host, port, root, outside): a served folder with a page and subfolders, and a folder
    beside it holding a secret the server must never hand out."""
    monkeypatch.setattr(build.StaticHandler, "quiet", True)
    root, outside = tmp_path / "dist", tmp_path / "outside"
    (root / "models" / "m").mkdir(parents=True)
    (root / "pyodide").mkdir()
    (root / "index.html").write_text(PAGE)
    (root / "models" / "m" / "config.json").write_text("{}")
    (root / "worker.js").write_text("1")
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (outside / "index.html").write_text("secret page")
    server = build.make_server(root, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_address[1], root, outside
    server.shutdown()
    server.server_close()


def get(site, path, method="GET", headers=()):
    """(status, headers, body) for a raw request path, sent byte for byte."""
    connection = http.client.HTTPConnection(site[0], site[1], timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_files_are_served_with_nosniff_and_the_pages_policy(site):
    for path in ("/", "/index.html", "/models/m/config.json", "/nowhere", "/worker.js", "/worker.js?v=1"):
        status, headers, _ = get(site, path)
        assert status == (404 if path == "/nowhere" else 200), path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        # the meta tag's policy, whitespace folded; a script (the worker's) may also run blob: URLs
        blob = " blob:" if path.split("?")[0].endswith(".js") else ""
        assert headers["Content-Security-Policy"] == f"default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{blob}", path


def test_the_policy_is_the_one_in_the_real_page():
    policy = build.page_content_security_policy(build.ROOT / "web")
    assert "script-src 'self' 'wasm-unsafe-eval'" in policy and "object-src 'none'" in policy
    worker = build.worker_content_security_policy(policy)
    assert worker == policy.replace("script-src 'self' 'wasm-unsafe-eval'", "script-src 'self' 'wasm-unsafe-eval' blob:")


def test_a_page_without_exactly_one_policy_is_refused(tmp_path):
    (tmp_path / "index.html").write_text("<html><head><title>no policy</title></head></html>")
    with pytest.raises(build.BuildError, match="exactly one non-empty"):
        build.make_server(tmp_path, port=0)


@pytest.mark.parametrize("path", ["/%00", "/index.html%00.js", "/%2e%2e/outside/secret.txt", "/models/%2E%2E/index.html",
                                  "/..%5coutside%5csecret.txt", "/a%5cb", "/%0d%0aX-Injected:%201", "/%zz", "/%",
                                  "/%ff%fe", "/%7f"])
def test_bad_paths_get_a_400(site, path):
    status, headers, _ = get(site, path)
    assert status == 400, path
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Injected" not in headers
    assert get(site, "/index.html")[0] == 200  # and the server goes on


@pytest.mark.parametrize("path", ["/models/", "/models", "/pyodide/", "/models/m/"])
def test_folders_are_never_listed(site, path):
    status, _, body = get(site, path)
    assert status in (404, 301), path  # "/models" redirects to "/models/", which is a 404
    assert b"config.json" not in body and b"Directory listing" not in body


def test_symlinks_out_of_the_folder_are_refused(site):
    root, outside = site[2], site[3]
    os.symlink(outside, root / "out")  # a folder link (as /etc in the report)
    os.symlink(outside / "secret.txt", root / "secret.txt")  # a file link
    os.symlink(outside, root / "models" / "up")
    for path in ("/out/secret.txt", "/out/", "/out", "/secret.txt", "/models/up/secret.txt", "/models/up/"):
        status, _, body = get(site, path)
        assert status in (404, 301), path
        assert b"secret" not in body, path
    assert get(site, "/out/secret.txt", method="HEAD")[0] == 404


def test_symlinks_inside_the_folder_still_work(site):
    root = site[2]
    os.symlink(root / "models" / "m", root / "models" / "alias")
    status, _, body = get(site, "/models/alias/config.json")
    assert status == 200 and body == b"{}"


def test_isolated_serving_sends_coop_and_coep_and_plain_serving_does_not(site, tmp_path):
    for path in ("/", "/worker.js", "/nowhere"):
        _, headers, _ = get(site, path)
        assert "Cross-Origin-Opener-Policy" not in headers and "Cross-Origin-Embedder-Policy" not in headers
    server = build.make_server(site[2], port=0, isolated=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for path in ("/", "/worker.js", "/models/m/config.json", "/nowhere"):
            _, headers, _ = get(("127.0.0.1", server.server_address[1]), path)
            assert headers["Cross-Origin-Opener-Policy"] == "same-origin", path
            assert headers["Cross-Origin-Embedder-Policy"] == "require-corp", path
    finally:
        server.shutdown()
        server.server_close()


def test_byte_ranges_are_answered_with_that_part(site):
    """The page reads a .gguf file's header with Range requests before downloading it."""
    data = bytes(range(256)) * 40  # 10,240 bytes
    (site[2] / "models" / "m" / "model.gguf").write_bytes(data)
    path = "/models/m/model.gguf"
    for wanted, (first, last) in {"bytes=0-99": (0, 99), "bytes=10000-": (10000, 10239),
                                  "bytes=10000-99999": (10000, 10239), "bytes=-40": (10200, 10239)}.items():
        status, headers, body = get(site, path, headers=[("Range", wanted)])
        assert status == 206, wanted
        assert headers["Content-Range"] == f"bytes {first}-{last}/10240", wanted
        assert body == data[first:last + 1] and headers["Content-Length"] == str(len(body)), wanted
        assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = get(site, path, headers=[("Range", "bytes=10240-")])
    assert status == 416 and headers["Content-Range"] == "bytes */10240" and body == b""
    for ignored in ("bytes=0-1,5-9", "items=0-9", "bytes=9-2", "bytes=x-"):  # answered whole
        status, _, body = get(site, path, headers=[("Range", ignored)])
        assert status == 200 and body == data, ignored
    assert get(site, "/models/up/x.gguf", headers=[("Range", "bytes=0-9")])[0] == 404
    os.symlink(site[3] / "secret.txt", site[2] / "leak.gguf")
    status, _, body = get(site, "/leak.gguf", headers=[("Range", "bytes=0-3")])
    assert status == 404 and b"secr" not in body


def test_a_browser_that_hangs_up_mid_download_leaves_no_traceback(site, capfd):
    """A tab closed during a big download (the e2e tests close pages mid-download all the time) is
    not a server error: no traceback; the server keeps serving."""
    (site[2] / "big.bin").write_bytes(os.urandom(32 * 2**20))
    for _ in range(3):
        with socket.create_connection(site[:2], timeout=10) as s:
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1024)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    time.sleep(0.5)  # the handler threads meet the closed sockets
    assert get(site, "/worker.js")[0] == 200
    assert "Traceback" not in capfd.readouterr().err
