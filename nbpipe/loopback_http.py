"""A kept-alive ``POST`` of JSON to a runner on this machine, with the standard library.

``Client.submit`` posts every run here when its runner is on a loopback address over plain HTTP
(the embedded runner, or one started with ``nbpipe runner start``): httpx spends ~0.75 ms of CPU
per request in its own layers, ``http.client`` ~0.25 ms — a third of a fully cached re-run
(issue 14). Everything else (uploads, event streams, remote and HTTPS runners, proxies) stays on
httpx. A kept connection the runner may have closed (idle past its keep-alive, or readable:
an EOF is waiting) is replaced *before* the request, never retried after it: a submit is sent
at most once. Non-goal: anything but one JSON request and its JSON (or error) answer.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import threading
import time
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
IDLE_S = 3.0  # a connection idle this long is replaced (uvicorn closes idle ones after 5 s)


class LoopbackPoster:
    def __init__(self, url: str, headers: dict[str, str], timeout: float):
        u = urlsplit(url)
        self.host, self.port = u.hostname or "", u.port or 80
        self.headers = {**headers, "Content-Type": "application/json", "Accept": "application/json"}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def usable(url: str) -> bool:
        """A plain-HTTP runner on a loopback address, and no proxy that httpx would go through."""
        u = urlsplit(url)
        proxied = any(os.environ.get(v) for v in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"))
        return u.scheme == "http" and (u.hostname or "") in LOOPBACK and u.path in ("", "/") and not proxied

    def post(self, path: str, body: Any) -> tuple[int, bytes] | None:
        """(status, body) of the answer; None when another thread holds the connection (use httpx).
        Raises ``OSError`` when the runner cannot be reached, ``TimeoutError`` when it does not answer."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn = self._conn
            if conn is None or conn.sock is None or time.monotonic() - self._used > IDLE_S or _readable(conn):
                if conn is not None:
                    conn.close()
                conn = self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request("POST", path, body=json.dumps(body).encode(), headers=self.headers)
                resp = conn.getresponse()
                data = resp.read()
            except BaseException:
                conn.close()
                self._conn = None
                raise
            if resp.will_close:
                conn.close()
                self._conn = None
            self._used = time.monotonic()
            return resp.status, data
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _readable(conn: http.client.HTTPConnection) -> bool:
    """An idle kept connection with something to read has been closed by the runner (or is broken)."""
    try:
        return bool(select.select([conn.sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
