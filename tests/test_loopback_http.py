"""The kept-alive loopback POST the client submits runs with (nbpipe.loopback_http)."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbpipe.client import Client
from nbpipe.errors import RunnerError
from nbpipe.loopback_http import LoopbackPoster


class _Server:
    """Answers each POST with its body echoed, then (``drop``) closes the connection without saying so,
    as a runner does to an idle kept-alive connection."""

    def __init__(self, drop: bool, status: int = 200):
        self.bodies: list[dict] = []
        self.peers: set[int] = set()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                outer.peers.add(self.client_address[1])
                data = json.dumps({"got": body, "message": "refused" if status >= 400 else ""}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                if drop:
                    self.close_connection = True

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("drop", [False, True])
def test_each_post_is_sent_once_on_a_kept_or_a_closed_connection(drop: bool) -> None:
    srv = _Server(drop)
    try:
        p = LoopbackPoster(srv.url, {"Authorization": "Bearer t"}, 10.0)
        for i in range(5):
            status, data = p.post("/api/v1/runs", {"i": i})  # type: ignore[misc]
            assert status == 200 and json.loads(data)["got"] == {"i": i}
            if drop:  # the runner's close has reached this end (as it has once a connection sat idle)
                assert p._sock is not None and select.select([p._sock], [], [], 30)[0]
        assert srv.bodies == [{"i": i} for i in range(5)]  # never resent, never lost
        # kept alive: one connection; closed by the server after each answer: a new one each time
        assert len(srv.peers) == (5 if drop else 1)
        p.close()
    finally:
        srv.close()


def test_client_uses_it_only_for_a_plain_http_loopback_runner() -> None:
    assert LoopbackPoster.usable("http://127.0.0.1:8888") and LoopbackPoster.usable("http://localhost:1")
    assert not LoopbackPoster.usable("https://127.0.0.1:8888")
    assert not LoopbackPoster.usable("http://10.1.2.3:8888")
    assert not LoopbackPoster.usable("http://127.0.0.1:8888/proxy/runner")


def test_client_errors_are_the_same_as_over_httpx() -> None:
    srv = _Server(False, status=400)
    try:
        c = Client(srv.url, token="t")
        assert c._poster is not None
        with pytest.raises(RunnerError, match="^refused"):
            c._post_json("/api/v1/runs", {"x": 1})
        c.close()
    finally:
        srv.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = Client(f"http://127.0.0.1:{port}", token="t")
    with pytest.raises(RunnerError, match="No runner at"):
        c._post_json("/api/v1/runs", {"x": 1})


def test_a_request_leaves_in_one_send_and_odd_headers_go_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Head and body in one segment (http.client sent two, and the runner could wake for each);
    a header http.client would refuse (a newline in a token) is left to httpx, which says so."""
    sent: list[bytes] = []
    real = socket.socket.sendall

    def sendall(self: socket.socket, data: bytes, *a: object) -> None:
        if self.getpeername()[1] == port:  # the client's sends, not the test server's answers
            sent.append(bytes(data))
        real(self, data, *a)

    srv = _Server(False)
    port = srv.httpd.server_address[1]
    try:
        p = LoopbackPoster(srv.url, {"Authorization": "Bearer t"}, 10.0)
        monkeypatch.setattr(socket.socket, "sendall", sendall)
        status, data = p.post("/api/v1/runs", {"i": 1})  # type: ignore[misc]
        monkeypatch.undo()
        assert status == 200 and json.loads(data)["got"] == {"i": 1}
        assert len(sent) == 1 and sent[0].startswith(b"POST /api/v1/runs HTTP/1.1\r\n")
        assert b"\r\nAuthorization: Bearer t\r\n" in sent[0] and sent[0].endswith(b'\r\n\r\n{"i": 1}')
        p.close()
        assert LoopbackPoster(srv.url, {"Authorization": "Bearer t\r\nX-Evil: 1"}, 10.0).post("/api/v1/runs", {}) is None
        assert srv.bodies == [{"i": 1}]
    finally:
        srv.close()


class _Scripted:
    """A server that reads one request per connection and answers with the given raw bytes (in the
    given pieces), then closes it if ``close``: the shapes of HTTP/1.x answers the parser must read."""

    def __init__(self, pieces: list[bytes], close: bool = True):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.url = f"http://127.0.0.1:{self.lsock.getsockname()[1]}"
        self.requests: list[bytes] = []

        def serve() -> None:
            conn, _ = self.lsock.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < n:
                body += conn.recv(65536)
            self.requests.append(body)
            for piece in pieces:
                conn.sendall(piece)
            if close:
                conn.close()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.thread.join(30)
        self.lsock.close()


@pytest.mark.parametrize("pieces, keeps", [
    ([b"HTTP/1.1 201 Created\r\ncontent-length: 12\r\ncontent-type: application/json\r\n\r\n", b'{"ok": tru', b"e}"], True),
    ([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"ok\": true}"], True),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ok\"\r\n", b"7;x=y\r\n: true}\r\n0\r\n\r\n"], True),
    ([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"ok\": ", b"true}"], False),
    ([b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n{\"ok\": true}"], False),
])
def test_answers_in_every_http11_shape_are_read_whole(pieces: list[bytes], keeps: bool) -> None:
    srv = _Scripted(pieces, close=not keeps)
    try:
        p = LoopbackPoster(srv.url, {}, 10.0)
        status, data = p.post("/api/v1/runs", {"i": 1})  # type: ignore[misc]
        assert status in (200, 201) and json.loads(data) == {"ok": True}
        assert (p._sock is not None) == keeps  # kept only if the answer allows it
        assert srv.requests == [b'{"i": 1}']
        p.close()
    finally:
        srv.close()


def test_a_runner_that_closes_without_answering_is_unreachable_and_the_post_is_not_resent() -> None:
    srv = _Scripted([])
    try:
        c = Client(srv.url, token="t")
        with pytest.raises(RunnerError, match="No runner at|closed|answer"):
            c._post_json("/api/v1/runs", {"x": 1}, _again=False)
        assert srv.requests == [b'{"x": 1}']
        c.close()
    finally:
        srv.close()
    srv = _Scripted([b"SSH-2.0-OpenSSH_9.2\r\n\r\n"])
    try:
        p = LoopbackPoster(srv.url, {}, 10.0)
        with pytest.raises(http.client.HTTPException):
            p.post("/api/v1/runs", {})
        assert p._sock is None
    finally:
        srv.close()
