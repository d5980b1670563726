"""Schedules and data triggers on a real runner: interval firing, catch-up, concurrency, pause, folder trigger."""

from __future__ import annotations

import time

import pytest

from nbpipe import component, pipeline
from nbpipe.errors import NbpipeError, RunnerError


@component(cache=False)
def tick(n: int) -> int:
    return n + 1


@component(cache=False)
def slow(n: int) -> int:
    import time

    time.sleep(120)  # outlives the test: the schedule must see it active however slow the machine is
    return n


@component(cache=False)
def count_files(files: list) -> int:
    return len(files)


@pipeline
def ticking(n: int = 1):
    tick(n=n)


@pipeline
def slow_p(n: int = 1):
    slow(n=n)


@pipeline
def ingest(files: list = [], tag: str = "x"):
    count_files(files=files)


def _runs_of(client, sid: str) -> list[dict]:
    return [r for r in client.runs(limit=200) if r["labels"].get("schedule") == sid]


def _wait_for(pred, seconds: float) -> None:
    deadline = time.time() + seconds
    while not pred():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_interval_schedule_fires_twice_on_time_then_pause_and_delete(nb_client) -> None:
    s = nb_client.create_schedule(ticking, {"n": 41}, interval=1.0, name="every second", experiment="sched")
    assert s["kind"] == "interval" and s["paused"] is False
    _wait_for(lambda: len(_runs_of(nb_client, s["id"])) >= 2, 120)
    paused = nb_client.pause_schedule(s["id"])
    assert paused["paused"] is True
    runs = sorted(_runs_of(nb_client, s["id"]), key=lambda r: r["created_at"])
    jitter = [r["created_at"] - float(r["labels"]["scheduled_for"]) for r in runs]
    print(f"\nschedule fire jitter: {', '.join(f'{j * 1000:.0f} ms' for j in jitter)}")
    assert all(j >= 0 for j in jitter), "fired before its slot"  # how late is load-dependent: measured, not asserted
    slots = [float(r["labels"]["scheduled_for"]) for r in runs]
    assert all(abs((b - a) - 1.0) < 1e-6 for a, b in zip(slots, slots[1:]))
    assert runs[0]["experiment"] == "sched" and runs[0]["params"] == {"n": 41}
    nb_client.run(runs[0]["id"]).wait(timeout=60)
    assert nb_client.run(runs[0]["id"]).output("tick") == 42
    count = len(_runs_of(nb_client, s["id"]))
    time.sleep(1.5)
    assert len(_runs_of(nb_client, s["id"])) == count, "a paused schedule fired"
    assert any(x["id"] == s["id"] for x in nb_client.schedules())
    nb_client.delete_schedule(s["id"])
    assert all(x["id"] != s["id"] for x in nb_client.schedules())
    with pytest.raises(RunnerError, match="No schedule"):
        nb_client.schedule(s["id"])


def test_missed_slots_fire_once_without_catchup_and_each_with_it(nb_client) -> None:
    now = time.time()
    once = nb_client.create_schedule(ticking, interval=60, start_at=now - 600.5, max_concurrency=50)
    every = nb_client.create_schedule(ticking, interval=60, start_at=now - 180.5, max_concurrency=50, catchup=True)
    _wait_for(lambda: len(_runs_of(nb_client, every["id"])) >= 4, 120)
    _wait_for(lambda: len(_runs_of(nb_client, once["id"])) >= 1, 120)
    time.sleep(0.5)  # a wrong second catch-up fire would come right after the first
    assert len(_runs_of(nb_client, once["id"])) == 1
    assert len(_runs_of(nb_client, every["id"])) == 4  # the slots at -180, -120, -60 and 0 s
    assert nb_client.schedule(once["id"])["next_fire_at"] > now
    for s in (once, every):
        nb_client.delete_schedule(s["id"])


def test_max_concurrency_skips_fires_while_runs_are_active(nb_client) -> None:
    s = nb_client.create_schedule(slow_p, interval=0.5, max_concurrency=1)
    _wait_for(lambda: nb_client.schedule(s["id"])["skipped"] >= 2, 120)
    nb_client.pause_schedule(s["id"])
    runs = _runs_of(nb_client, s["id"])
    assert len(runs) == 1, "a fire started a second run while the first was active"
    nb_client.delete_schedule(s["id"])
    nb_client.run(runs[0]["id"]).cancel()


def test_folder_trigger_starts_a_run_with_the_new_files(nb_client, tmp_path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "old.csv").write_text("already here")
    s = nb_client.create_schedule(ingest, {"tag": "t"}, trigger={"folder": str(inbox), "param": "files", "poll": 0.3})
    time.sleep(0.8)
    assert _runs_of(nb_client, s["id"]) == []
    (inbox / "a.csv").write_text("1")
    (inbox / "b.csv").write_text("2")
    _wait_for(lambda: len(_runs_of(nb_client, s["id"])) == 1, 120)
    run = _runs_of(nb_client, s["id"])[0]
    assert run["params"] == {"files": [str(inbox / "a.csv"), str(inbox / "b.csv")], "tag": "t"}
    assert nb_client.run(run["id"]).wait(timeout=60).output("count_files") == 2
    time.sleep(0.8)
    assert len(_runs_of(nb_client, s["id"])) == 1, "the same files fired twice"
    nb_client.delete_schedule(s["id"])


def test_bad_schedules_say_what_to_fix(nb_client, tmp_path) -> None:
    with pytest.raises(RunnerError, match="not a cron expression"):
        nb_client.create_schedule(ticking, cron="every tuesday")
    with pytest.raises(RunnerError, match="exactly one of cron, interval or trigger"):
        nb_client.create_schedule(ticking, cron="* * * * *", interval=5)
    with pytest.raises(NbpipeError, match="has no parameter 'nope'"):
        nb_client.create_schedule(ingest, trigger={"folder": str(tmp_path), "param": "nope"})
    s = nb_client.create_schedule(ticking, cron="0 3 * * *")
    assert s["kind"] == "cron" and s["next_fire_at"] > time.time()
    nb_client.delete_schedule(s["id"])


def test_cli_refuses_a_zero_interval_in_its_own_words(nb_runner, capsys) -> None:
    """``--interval 0`` said "Invalid request: body.interval: Input should be greater than 0"."""
    from nbpipe.cli import main

    code = main(["--runner", nb_runner.url, "schedules", "create", "nbpipe.examples.digits:digits", "--interval", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "--interval must be a number of seconds > 0, e.g. 3600 (got 0)" in err, err
