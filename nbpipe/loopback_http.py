"""A kept-alive ``POST`` of JSON to a runner on this machine, with the standard library.

``Client.submit`` posts every run here when its runner is on a loopback address over plain HTTP
(the embedded runner, or one started with ``nbpipe runner start``): httpx spends ~0.75 ms of CPU
per request in its own layers, ``http.client`` ~0.25 ms — a third of a fully cached re-run
(issue 14). Everything else (uploads, event streams, remote and HTTPS runners, proxies) stays on
httpx. A kept connection the runner may have closed (idle past its keep-alive, or readable:
an EOF is waiting) is replaced *before* the request, never retried after it: a submit is sent
at most once. The request goes out in one ``send`` (``http.client`` sends the head and the body
separately: two segments, and the runner often woke twice); :func:`read_response` reads the answer.
Non-goal: anything but one JSON request and its JSON (or error) answer.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
IDLE_S = 3.0  # a connection idle this long is replaced (uvicorn closes idle ones after 5 s)
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")  # not an HTTP token character
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters (CR, LF): header injection
_BAD_PATH = re.compile(r"[\x00-\x20\x7f]")  # as http.client refuses in a request target


class LoopbackPoster:
    def __init__(self, url: str, headers: dict[str, str], timeout: float):
        u = urlsplit(url)
        self.host, self.port = u.hostname or "", u.port or 80
        self.timeout = timeout
        host = f"[{self.host}]" if ":" in self.host else self.host  # as http.client writes Host
        fields = {"Host": host if self.port == 80 else f"{host}:{self.port}", "Accept-Encoding": "identity",
                  **headers, "Content-Type": "application/json", "Accept": "application/json"}
        self._head: bytes | None = None  # None: headers http.client would refuse; left to httpx (post says None)
        if all(name and not _BAD_NAME.search(name) and not _BAD_VALUE.search(str(value))
               for name, value in fields.items()):
            try:
                self._head = "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode("latin-1")
            except UnicodeEncodeError:
                pass
        self._sock: socket.socket | None = None
        self._used = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def usable(url: str) -> bool:
        """A plain-HTTP runner on a loopback address, and no proxy that httpx would go through."""
        u = urlsplit(url)
        proxied = any(os.environ.get(v) for v in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"))
        return u.scheme == "http" and (u.hostname or "") in LOOPBACK and u.path in ("", "/") and not proxied

    def post(self, path: str, body: Any) -> tuple[int, bytes] | None:
        """(status, body) of the answer; None when another thread holds the connection or the request
        is one ``http.client`` would refuse (use httpx, which says what is wrong).
        Raises ``OSError`` when the runner cannot be reached, ``TimeoutError`` when it does not answer."""
        if self._head is None or _BAD_PATH.search(path) or not path.isascii():
            return None
        data = json.dumps(body).encode()
        request = b"".join((b"POST ", path.encode("ascii"), b" HTTP/1.1\r\n", self._head,
                            b"Content-Length: %d\r\n\r\n" % len(data), data))
        if not self._lock.acquire(blocking=False):
            return None
        try:
            sock = self._sock
            if sock is None or time.monotonic() - self._used > IDLE_S or _readable(sock):
                if sock is not None:
                    sock.close()
                self._sock = None
                sock = socket.create_connection((self.host, self.port), self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sock = sock
            try:
                sock.sendall(request)
                status, answer, will_close = read_response(sock)
            except BaseException:
                sock.close()
                self._sock = None
                raise
            if will_close:
                sock.close()
                self._sock = None
            self._used = time.monotonic()
            return status, answer
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def read_response(sock: socket.socket) -> tuple[int, bytes, bool]:
    """(status, body, the connection closes after it) of one HTTP/1.x answer to a ``POST`` on ``sock``.

    What ``http.client.HTTPResponse`` does for it, without its buffered file and its e-mail header
    parser (~0.1 ms of a cached re-run's client CPU): the head up to its blank line, then the body by
    ``Content-Length``, chunks, or (neither) up to the end of the connection. Interim ``1xx`` answers are
    skipped. Raises ``http.client.RemoteDisconnected`` if the runner closes before answering,
    ``http.client.HTTPException`` on what is not HTTP, and the socket's ``TimeoutError``."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > _MAX_HEAD:
                raise http.client.LineTooLong("header")
            more = sock.recv(_CHUNK)
            if not more:
                if buf:
                    raise http.client.IncompleteRead(buf)
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            buf += more
            end = buf.find(b"\r\n\r\n", max(0, len(buf) - len(more) - 3))
        lines = buf[:end].split(b"\r\n")
        buf = buf[end + 4:]
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise http.client.BadStatusLine(lines[0].decode("latin-1"))
        status = int(parts[1])
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            continue
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        close = parts[0] == b"HTTP/1.0" or headers.get(b"connection", b"").lower() == b"close"
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body, buf = _chunked(sock, buf)
            return status, body, close
        length = headers.get(b"content-length")
        if length is not None:
            n = int(length)
            while len(buf) < n:
                more = sock.recv(max(_CHUNK, n - len(buf)))
                if not more:
                    raise http.client.IncompleteRead(buf, n - len(buf))
                buf += more
            return status, buf[:n], close
        if status in (204, 304):
            return status, b"", close
        while True:  # neither: the body ends with the connection
            more = sock.recv(_CHUNK)
            if not more:
                return status, buf, True
            buf += more


def _chunked(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """A chunked body from ``buf`` and the socket: (body, what was read past it)."""
    out = []

    def line() -> bytes:
        nonlocal buf
        while (i := buf.find(b"\r\n")) < 0:
            more = sock.recv(_CHUNK)
            if not more:
                raise http.client.IncompleteRead(b"".join(out))
            buf += more
        got, buf = buf[:i], buf[i + 2:]
        return got

    while True:
        size = int(line().split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while line():  # trailers, up to the blank line
                pass
            return b"".join(out), buf
        while len(buf) < size + 2:
            more = sock.recv(_CHUNK)
            if not more:
                raise http.client.IncompleteRead(b"".join(out))
            buf += more
        out.append(buf[:size])
        buf = buf[size + 2:]


_CHUNK = 65536
_MAX_HEAD = 65536  # as http.client's line and header limits keep a broken peer from filling memory


def _readable(sock: socket.socket) -> bool:
    """An idle kept connection with something to read has been closed by the runner (or is broken)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
