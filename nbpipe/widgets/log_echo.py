"""A step log fetched while the step runs, joined with the StepLog events that come around it.

The runner tails a step's log file every 0.1 s, so the text a log request answers may already hold
lines whose StepLog events arrive after it: appended as they came, they showed twice (most often a
step's first line, when the step was selected as it started). Events carry no file offset, so the
part of them already fetched is recognised by its text: they continue the fetched text from one of
its line starts, for a few seconds after the fetch. ``run_view_state.js`` (LogBook) does the same in
the browser.

Non-goals: fetching, or showing, logs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

ECHO_SECONDS = 3.0
ECHO_CHARS = 65536


def echo_start(text: str, events: str) -> int:
    """The latest line start in ``text`` from which ``events`` continue it; -1 if none."""
    x = text.rfind("\n", 0, max(0, len(text) - 1)) + 1
    while True:
        k = min(len(text) - x, len(events))
        if k > 0 and text[x:x + k] == events[:k]:
            return x
        if x == 0:
            return -1
        x = text.rfind("\n", 0, x - 1) + 1


@dataclass
class Echo:
    """The fetched text's tail that events may still repeat, from ``at`` (-1: not placed yet)."""

    text: str
    at: int
    until: float

    def strip(self, text: str, now: float | None = None) -> tuple[str, bool]:
        """The part of an event's ``text`` not fetched already, and whether more may still come."""
        if (time.monotonic() if now is None else now) > self.until or not self.text:
            return text, False
        if self.at < 0:
            self.at = echo_start(self.text, text)
            if self.at < 0:
                return text, False
        rest = self.text[self.at:]
        k = min(len(rest), len(text))
        if rest[:k] != text[:k]:
            return text, False
        self.at += k
        return text[k:], self.at < len(self.text)


def join_fetched(fetched: str, during: str, now: float | None = None) -> tuple[str, Echo | None]:
    """``fetched`` plus the part of ``during`` (events that came while fetching) it does not hold,
    and the echo to strip from the events still to come."""
    tail = fetched[-ECHO_CHARS:]
    at = echo_start(tail, during) if during else -1
    if during and at < 0:
        return fetched + during, None  # the events are not in the fetched text: later ones are not either
    skip = 0 if at < 0 else min(len(during), len(tail) - at)
    until = (time.monotonic() if now is None else now) + ECHO_SECONDS
    return fetched + during[skip:], Echo(tail, -1 if at < 0 else min(len(tail), at + len(during)), until)
