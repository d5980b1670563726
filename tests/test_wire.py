"""The runner's response writes (nbpipe.runner.wire): what one loop turn writes leaves as one write."""

from __future__ import annotations

import asyncio
import json

from nbpipe.runner.wire import Coalescing


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = self.eof = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.eof = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_turn_leave_together_and_in_order() -> None:
    async def go() -> tuple[_Transport, list[list[bytes]]]:
        t = _Transport()
        c = Coalescing(t, asyncio.get_running_loop())  # type: ignore[arg-type]
        seen = []
        c.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
        buf = bytearray(b"{}")
        c.write(buf)
        buf[:] = b"XX"  # the caller reuses its buffer: what was written stays written
        seen.append(list(t.writes))  # nothing sent yet: the turn is not over
        assert c.get_write_buffer_size() == 45
        await asyncio.sleep(0)
        seen.append(list(t.writes))
        c.write(b"data: 1\n\n")  # a stream's next chunk, in a later turn: its own write
        await asyncio.sleep(0)
        seen.append(list(t.writes))
        assert c.get_extra_info("peername") == "info:peername"  # the rest is the transport's
        return t, seen

    t, seen = asyncio.run(go())
    assert seen[0] == []
    assert seen[1] == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
    assert seen[2] == seen[1] + [b"data: 1\n\n"]


def test_close_sends_what_is_held_first_abort_drops_it() -> None:
    async def go() -> tuple[_Transport, _Transport]:
        loop = asyncio.get_running_loop()
        t1, t2 = _Transport(), _Transport()
        c1, c2 = Coalescing(t1, loop), Coalescing(t2, loop)  # type: ignore[arg-type]
        c1.write(b"head")
        c1.write(b"body")
        c1.close()  # e.g. Connection: close right after the body
        c2.write(b"head")
        c2.abort()
        await asyncio.sleep(0)  # the flush scheduled by the first write finds nothing (more) to send
        return t1, t2

    t1, t2 = asyncio.run(go())
    assert t1.writes == [b"headbody"] and t1.closed
    assert t2.writes == [] and t2.aborted


def test_a_real_runner_answers_through_it(nb_runner) -> None:  # noqa: ANN001 - the conftest fixture
    """A submit's answer (head and JSON body) parses as before, on a kept-alive connection."""
    from nbpipe.client import Client

    c = Client(nb_runner.url, token=nb_runner.token)
    for _ in range(3):
        status, data = c._poster.post("/api/v1/runs", {"package": "0" * 64, "params": {}})  # type: ignore[union-attr]
        assert status == 404 and "No package" in json.loads(data)["message"]
    c.close()
