"""Live views learn that a step waits for an identical running step, and skip event types they don't know.

A step whose identical twin (same cache key) runs in another run gets a ``StepWaiting`` event in the
commit that writes its reason, so the widget, the Lab views and ``%nbpipe`` show it live, not only
after a reload. An older client reading a newer runner's stream skips event types it does not know
(``events.UnknownEvent``) instead of failing: the newer runner here is a small HTTP server that
speaks the runner's event stream with one type this nbpipe has never heard of.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from nbpipe import component, pipeline
from nbpipe import events as ev
from nbpipe._progress import Progress
from nbpipe.client import Client
from nbpipe.run_handle import Run
from nbpipe.widgets.run_view import apply_event


@component
def held(gate_path: str) -> dict:
    """Waits until ``gate_path`` exists: the test decides when this step may finish."""
    import os
    import time

    while not os.path.exists(gate_path):
        time.sleep(0.05)
    return {"run": os.environ["NBPIPE_RUN_ID"]}


@pipeline(name="waiting-event")
def gated(gate_path: str = ""):
    held(gate_path=gate_path)


def _first(run: Any, what: type[ev.Event], step: str) -> Any:
    for event in run.events():
        if isinstance(event, what) and getattr(event, "step", "") == step:
            return event
    raise AssertionError(f"run {run.id} ended without {what.__name__}")


def test_the_waiting_step_s_reason_arrives_on_the_event_stream_while_its_twin_runs(nb_client, tmp_path) -> None:
    gate = tmp_path / "gate"
    first = nb_client.submit(gated, {"gate_path": str(gate)})
    try:
        _first(first, ev.StepStarted, "held")
        second = nb_client.submit(gated, {"gate_path": str(gate)})
        _first(second, ev.RunStarted, "")  # the tick that starts B looks at its step in the same commit
        upto = second.snapshot()["last_event_id"]
        seen = []
        for event in second.events():  # what B's stream carries up to that commit (A's step still runs)
            seen.append(event)
            if event.id >= upto:
                break
        waits = [e for e in seen if isinstance(e, ev.StepWaiting)]
        assert len(waits) == 1, [type(e).__name__ for e in seen]
        waiting = waits[0]
        reason = (f"waiting for step 'held' of run {first.id}, running the same code and inputs; "
                  "its result will be reused")
        assert (waiting.reason, waiting.waiting_for_run, waiting.waiting_for_step) == (reason, first.id, "held")
        # the row says the same (same commit), and a live snapshot folds the event in as a reload would show it
        row = second.snapshot()["steps"][0]
        assert (row["state"], row["reason"]) == ("pending", reason)
        live = {"id": second.id, "last_event_id": waiting.id - 1,
                "steps": [{"name": "held", "state": "pending", "reason": "", "max_attempts": 1, "attempt": 0}]}
        assert apply_event(live, waiting) and live["steps"][0]["reason"] == reason
        assert live["steps"][0]["state"] == "pending" and live["last_event_id"] == waiting.id
        gate.touch()
        done = second.wait(timeout=120).steps["held"]
        assert (done["state"], done["reason"]) == ("cached", f"reused from run {first.id} by the cache"), done
    finally:
        gate.touch()
        first.wait(timeout=120, raise_on_failure=False)


# ------------------------------------------------------------------ an event type from a newer runner

RUN = "r20261202-000000-abcdef"
STREAM = [
    {"type": "RunStarted", "run_id": RUN, "ts": 1.0, "id": 1},
    {"type": "StepTeleported", "run_id": RUN, "ts": 2.0, "id": 2, "step": "held", "where": "elsewhere"},
    {"type": "StepStarted", "run_id": RUN, "ts": 3.0, "id": 3, "step": "held", "attempt": 1, "max_attempts": 1},
    {"type": "StepFinished", "run_id": RUN, "ts": 4.0, "id": 4, "step": "held", "state": "succeeded",
     "attempt": 1, "duration": 1.0, "reason": "", "traceback": ""},
    {"type": "RunFinished", "run_id": RUN, "ts": 5.0, "id": 5, "state": "succeeded", "reason": "", "duration": 4.0},
]


def _snapshot(state: str, last: int) -> dict[str, Any]:
    step_state = "succeeded" if state == "succeeded" else "pending"
    return {"id": RUN, "name": "newer", "pipeline": "newer", "experiment": "Default", "state": state, "reason": "",
            "params": {}, "labels": {}, "created_at": 0.5, "started_at": None, "finished_at": None, "duration": None,
            "last_event_id": last, "steps": [{"name": "held", "component": "held", "display_name": "", "upstream": [],
                                              "state": step_state, "attempt": 0, "max_attempts": 1, "reason": "",
                                              "traceback": "", "inputs": {}, "outputs": {}}]}


class _NewerRunner(BaseHTTPRequestHandler):
    """A runner of a later nbpipe: its run's stream carries an event type this nbpipe does not know."""

    streamed = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith(f"/api/v1/runs/{RUN}/events"):
            body = "".join(f"id: {e['id']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in STREAM)
            self._answer(body.encode(), "text/event-stream")
            type(self).streamed.set()
        elif self.path.startswith(f"/api/v1/runs/{RUN}"):
            snap = _snapshot("succeeded", 5) if type(self).streamed.is_set() else _snapshot("running", 0)
            self._answer(json.dumps(snap).encode(), "application/json")
        else:
            self._answer(b'{"detail": "not here"}', "application/json", 404)

    def _answer(self, body: bytes, kind: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def newer_runner() -> Iterator[Client]:
    _NewerRunner.streamed.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NewerRunner)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = Client(f"http://127.0.0.1:{server.server_address[1]}", token="t")
    try:
        yield client
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_decode_makes_an_unknown_type_an_event_consumers_skip() -> None:
    event = ev.decode(json.dumps(STREAM[1]))
    assert isinstance(event, ev.UnknownEvent)
    assert (event.name, event.id, event.run_id, event.ts) == ("StepTeleported", 2, RUN, 2.0)
    assert ev.encode(event) == STREAM[1]  # passed on as it came
    assert isinstance(ev.decode({"type": "Newer", "id": "x", "ts": None}), ev.UnknownEvent)
    assert "UnknownEvent" not in ev.EVENT_TYPES  # not part of the vocabulary the views mirror
    with pytest.raises(ValueError):
        ev.decode("[1, 2]")


def test_an_older_client_skips_a_newer_runner_s_unknown_event_type(newer_runner: Client) -> None:
    events = list(newer_runner.events(RUN))
    assert [e.id for e in events] == [1, 2, 3, 4, 5]  # the stream went on past it; resuming starts after it
    assert isinstance(events[1], ev.UnknownEvent) and events[1].name == "StepTeleported"
    assert isinstance(events[-1], ev.RunFinished)
    # the live consumers fold the known events and skip the unknown one
    snap = _snapshot("running", 0)
    assert [apply_event(snap, e) for e in events] == [True, False, True, True, True]
    assert (snap["state"], snap["steps"][0]["state"], snap["last_event_id"]) == ("succeeded", "succeeded", 5)
    progress = Progress(_snapshot("running", 0))
    assert progress.apply(events[1]) is None
    assert [progress.apply(e) is not None for e in events[2:4]] == [True, True]


def test_waiting_on_a_run_reads_past_an_unknown_event_type(newer_runner: Client) -> None:
    run = Run(newer_runner, RUN)
    assert run.wait(timeout=30).last_snapshot["state"] == "succeeded"
