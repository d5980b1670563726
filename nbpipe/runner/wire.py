"""One socket write per HTTP response: uvicorn writes a response's head and its body separately.

uvicorn's HTTP protocol writes the status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send`` calls, two
segments, and the client (``http.client``, httpx) is woken for the head, parses it and sleeps again
until the body comes. On a fully cached re-run, answered in ~2 ms, the second write and wake-up were
~0.1 ms (issue 14). :class:`HttpProtocol` gives uvicorn's protocol a transport whose writes made in
one turn of the event loop are sent together at the end of that turn (``loop.call_soon``): a response
sent at once (every JSON answer) is one write; a streamed one (an event stream) still goes out chunk
by chunk, each as soon as the turn that wrote it ends. Closing, ``write_eof`` and ``abort`` flush (or
drop, for ``abort``) what is held first. Non-goal: anything but the order and grouping of writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools missing: uvicorn's own choice (h11), writes as they come
    HttpToolsProtocol = None


class Coalescing:
    """An ``asyncio`` transport's proxy: writes in one loop turn leave as one ``write``."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))  # a copy of a bytearray or memoryview: the caller may reuse it

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():  # lost meanwhile: nothing can be sent any more
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


if HttpToolsProtocol is not None:
    class HttpProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's httptools protocol on a :class:`Coalescing` transport."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(Coalescing(transport, self.loop))  # type: ignore[arg-type]


def http_protocol() -> Any:
    """What ``uvicorn.Config(http=...)`` gets: :class:`HttpProtocol`, or "auto" without httptools."""
    return HttpProtocol if HttpToolsProtocol is not None else "auto"
