"""Tail a step attempt's log file into ``StepLog`` events while it runs.

Reads new complete lines every 100 ms (and the rest at the end), caps how much of a chatty
step goes into the event stream (the full log stays in the file). Non-goal: log storage.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable

EVENT_LOG_CAP = 2 * 1024 * 1024


class LogTail:
    def __init__(self, path: str, emit: Callable[[str], object], interval: float = 0.1):
        self.path = path
        self.emit = emit
        self.interval = interval
        self.offset = 0
        self.sent = 0
        self.capped = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.poll(final=False)

    def poll(self, final: bool) -> None:
        if self.capped:  # past the event cap: nothing more is sent, so nothing more is read
            try:
                self.offset = os.path.getsize(self.path)
            except OSError:
                pass
            return
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(1 << 20)
        except FileNotFoundError:
            return
        if not chunk:
            return
        if not final:
            cut = chunk.rfind(b"\n")
            if cut < 0:
                if len(chunk) < 65536:
                    return
                cut = len(chunk) - 1
            chunk = chunk[: cut + 1]
        self.offset += len(chunk)
        if self.capped:
            return
        if self.sent + len(chunk) > EVENT_LOG_CAP:
            self.capped = True
            self.emit("… (log continues; the event stream shows the first 2 MiB — use `nbpipe logs` for all of it)\n")
            return
        self.sent += len(chunk)
        self.emit(chunk.decode("utf-8", errors="replace"))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while True:
            before = self.offset
            self.poll(final=True)
            if self.offset == before:
                break

    def last_lines(self, n: int) -> str:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 64 * 1024))
                text = fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-n:]).replace("\x00", "\\x00")  # a NUL fits no database column
