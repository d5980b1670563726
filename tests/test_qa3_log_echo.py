"""The notebook widget's kernel side joins a step log fetched mid-run with the StepLog events around
it: lines the fetch already held, whose events came after it (the runner tails the file every
0.1 s), showed twice in the widget's Logs tab; they now show once, and new lines still show."""

from __future__ import annotations

from nbpipe.widgets.log_echo import Echo, echo_start, join_fetched


def feed(text: str, echo: Echo | None, *events: str, now: float = 0.0) -> str:
    for event in events:
        add, more = echo.strip(event, now) if echo else (event, False)
        echo = echo if more else None
        text += add
    return text


def test_a_fetched_line_whose_event_comes_after_shows_once() -> None:
    text, echo = join_fetched("making 5 numbers\n", "", now=0.0)
    assert feed(text, echo, "making 5 numbers\n", "making 5 numbers\n", "done\n") == (
        "making 5 numbers\nmaking 5 numbers\ndone\n")


def test_events_during_and_after_the_fetch_show_once() -> None:
    text, echo = join_fetched("a\nb\nc\n", "a\n", now=0.0)
    assert text == "a\nb\nc\n"
    assert feed(text, echo, "b\nc\nd\n") == "a\nb\nc\nd\n"
    text, echo = join_fetched("one\ntw", "one\n", now=0.0)
    assert feed(text, echo, "two\nthree\n") == "one\ntwo\nthree\n"


def test_late_or_foreign_events_are_kept() -> None:
    text, echo = join_fetched("tick\n", "", now=0.0)
    assert feed(text, echo, "tick\n", now=60.0) == "tick\ntick\n"
    text, echo = join_fetched("x\n", "y\n", now=0.0)
    assert echo is None and feed(text, echo, "x\n") == "x\ny\nx\n"
    assert echo_start("a\nb\n", "c\n") == -1 and echo_start("a\nb\n", "b\nc\n") == 2
