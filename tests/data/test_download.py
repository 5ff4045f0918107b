"""download(): mirrors, checksums, retries and the atomic write, against a local HTTP server on 127.0.0.1."""
import hashlib
import http.server
import os
import socket
import threading

import pytest

from tinyconv.data import download as dl
from tinyconv.data.download import ChecksumError, DownloadError, download_url as download

PAYLOAD = os.urandom(100_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """/good/f: the payload; /bad/f: wrong bytes; /short/f: a body cut off early; anything else: 404."""

    hits = []

    def do_GET(self):
        self.hits.append(self.path)
        if self.path.startswith("/good/"):
            body, length = PAYLOAD, len(PAYLOAD)
        elif self.path.startswith("/bad/"):
            body, length = PAYLOAD[::-1], len(PAYLOAD)
        elif self.path.startswith("/short/"):
            body, length = PAYLOAD[:1000], len(PAYLOAD)
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("TINYCONV_OFFLINE", raising=False)
    Handler.hits.clear()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftovers(folder):
    return [p for p in os.listdir(folder) if p.endswith(".part")]


def test_downloads_and_verifies(server, tmp_path):
    target = tmp_path / "sub" / "f.gz"
    assert download(f"{server}/good/f.gz", target, md5=MD5, progress=True) == str(target)
    assert target.read_bytes() == PAYLOAD
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    download([f"{server}/good/g"], tmp_path / "g", sha256=sha, progress=False)
    assert (tmp_path / "g").read_bytes() == PAYLOAD


def test_failing_mirrors_then_a_working_one(server, tmp_path):
    urls = [f"http://127.0.0.1:{closed_port()}/f", f"{server}/missing/f", f"{server}/bad/f", f"{server}/short/f",
            f"{server}/good/f"]
    download(urls, tmp_path / "f", md5=MD5, attempts=2, backoff=0, progress=False)
    assert (tmp_path / "f").read_bytes() == PAYLOAD
    # 404 and the cut-off body are retried; a checksum mismatch moves on to the next mirror at once
    assert Handler.hits == ["/missing/f", "/missing/f", "/bad/f", "/short/f", "/short/f", "/good/f"]
    assert leftovers(tmp_path) == []


def test_all_mirrors_fail_lists_each_and_leaves_nothing(server, tmp_path):
    target = tmp_path / "f"
    with pytest.raises(DownloadError) as e:
        download([f"{server}/bad/f", f"{server}/missing/f"], target, md5=MD5, attempts=1, progress=False)
    msg = str(e.value)
    assert f"{server}/bad/f: md5 mismatch: expected {MD5}" in msg and "404" in msg
    assert not target.exists() and leftovers(tmp_path) == []


def test_checksum_mismatch_keeps_the_previous_file(server, tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(DownloadError, match="md5 mismatch"):
        download(f"{server}/bad/f", target, md5=MD5, progress=False)
    assert target.read_bytes() == b"old"


def test_file_urls(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    download(["file:///nonexistent/tinyconv/x", src.as_uri()], tmp_path / "out", md5=MD5, attempts=1,
             progress=False)
    assert (tmp_path / "out").read_bytes() == PAYLOAD


def test_interrupt_mid_download_leaves_nothing(server, tmp_path, monkeypatch):
    def interrupted(url, tmp, *args):
        tmp.write(PAYLOAD[:500])
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_fetch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download(f"{server}/good/f", tmp_path / "f", md5=MD5, progress=False)
    assert os.listdir(tmp_path) == []


def test_offline_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYCONV_OFFLINE", "1")
    with pytest.raises(DownloadError, match="TINYCONV_OFFLINE"):
        download("http://127.0.0.1:1/f", tmp_path / "f")


def test_checksum_error_is_a_download_error():
    assert issubclass(ChecksumError, DownloadError)
