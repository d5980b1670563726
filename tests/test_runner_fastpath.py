"""The runner's fast paths (issue 14) keep what users and the UI see exactly as before.

- A run whose every step is a cache hit is written finished inside ``POST /runs`` (one
  transaction): the answer is final, steps are ``cached`` with the same rows and the same events,
  in the same order, that a ticked run writes; one changed step makes it a normal run again.
- Live readers get events from the runner's memory, older ids from the table: both read the same.
- The ready set: a wide fan-out and a long chain (with a failure in the middle) end with the
  same states a full scan gives.
"""

from __future__ import annotations

import json
from typing import Any

from nbpipe import Dataset, Output, component, pipeline


@component(name="fp_load")
def load(n: int) -> dict:
    return {"n": n}


@component(name="fp_model")
def model(data: dict, out: Output[Dataset]) -> int:
    with open(out.path, "w") as fh:
        fh.write(json.dumps(data))
    return data["n"] * 2


@component(name="fp_side")
def side(m: int) -> int:
    return m + 1


@pipeline(name="fastpath")
def fastpath(n: int = 1, m: int = 1):
    d = load(n=n)
    model(data=d.output)
    side(m=m)


@component(name="fp_plus")  # (fp_inc below is another test's, uncached)
def plus(x: int) -> int:
    return x + 1


@component(name="fp_add")
def add(x: int, k: int) -> int:
    return x + k


@pipeline(name="fastpath-chain")
def cached_then_changed(x: int = 1, k: int = 0):
    add(x=plus(x=plus(x=x).output).output, k=k)


def _events(client: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's stream as sent (it ends after RunFinished)."""
    body = client._http.get(f"/api/v1/runs/{run_id}/events", params={"after": 0}).text
    return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]


def _shape(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["type"], e.get("step"), e.get("state"), e.get("name"), e.get("reason")) for e in events]


def test_a_fully_cached_run_is_answered_finished_with_the_rows_and_events_of_a_ticked_one(nb_client) -> None:
    first = nb_client.submit(fastpath, {"n": 41, "m": 5}).wait(timeout=120)
    # m changes: side runs again, load and model are cache hits taken by ticking (the normal path)
    ticked = nb_client.submit(fastpath, {"n": 41, "m": 6}).wait(timeout=120)
    assert {s["name"]: s["state"] for s in ticked.last_snapshot["steps"]} == {
        "fp_load": "cached", "fp_model": "cached", "fp_side": "succeeded"}

    again = nb_client.submit(fastpath, {"n": 41, "m": 5})
    snap = again.last_snapshot  # the POST's own answer: already final, no event stream needed
    assert snap["state"] == "succeeded" and snap["reason"] == ""
    steps = {s["name"]: s for s in snap["steps"]}
    assert {n: s["state"] for n, s in steps.items()} == {"fp_load": "cached", "fp_model": "cached", "fp_side": "cached"}
    before = {s["name"]: s for s in first.snapshot()["steps"]}
    by_tick = {s["name"]: s for s in ticked.snapshot()["steps"]}
    for name, s in steps.items():
        assert s["cached"] and s["attempt"] == 0 and s["started_at"] is None and s["finished_at"]
        assert s["reason"].startswith("reused from run ") and s["reason"].endswith(" by the cache") and s["traceback"] == ""
        assert s["outputs"] == before[name]["outputs"]  # the first run's outputs (same digests, same keys)
        assert s["inputs"] == before[name]["inputs"]
        if name != "fp_side":
            assert s["inputs"] == by_tick[name]["inputs"] and s["outputs"] == by_tick[name]["outputs"]
    assert again.output("fp_model", "output") == 82 and again.output("fp_side") == 6
    # answered from memory, it is exactly what the database reads back (every field, the last event id)
    assert snap == nb_client.get_run(again.id)

    fast, slow = _events(nb_client, again.id), _events(nb_client, ticked.id)
    assert [e["id"] for e in fast] == sorted(e["id"] for e in fast)
    assert fast[0]["type"] == "RunCreated" and fast[1]["type"] == "RunStarted" and fast[-1]["type"] == "RunFinished"
    assert fast[0]["graph"] == slow[0]["graph"] and fast[-1]["state"] == "succeeded"
    # the cached steps' events are those the ticked run wrote for its cached steps, in order
    cached_slow = [x for x in _shape(slow) if x[1] in ("fp_load", "fp_model")]
    assert [x for x in _shape(fast) if x[1] in ("fp_load", "fp_model")] == cached_slow
    assert ("StepFinished", "fp_side", "cached", None, f"reused from run {first.id} by the cache") in _shape(fast)
    saved = [e for e in fast if e["type"] == "ArtifactSaved"]
    assert sorted((e["step"], e["name"]) for e in saved) == [("fp_load", "output"), ("fp_model", "out"),
                                                            ("fp_model", "output"), ("fp_side", "output")]
    assert all(e["digest"] == before[e["step"]]["outputs"][e["name"]]["digest"] for e in saved)


def test_a_run_with_one_step_not_cached_is_ticked_and_executes_it(nb_client) -> None:
    nb_client.submit(fastpath, {"n": 7, "m": 70}).wait(timeout=120)
    r = nb_client.submit(fastpath, {"n": 8, "m": 70})  # load and model change, side is a hit
    assert r.last_snapshot["state"] in ("queued", "running")
    r.wait(timeout=120)
    assert {s["name"]: s["state"] for s in r.snapshot()["steps"]} == {
        "fp_load": "succeeded", "fp_model": "succeeded", "fp_side": "cached"}
    assert r.output("fp_model", "output") == 16


def test_events_read_from_memory_and_from_the_table_are_the_same(nb_runner_factory) -> None:
    runner = nb_runner_factory("events")
    client = runner.client()
    run = client.submit(fastpath, {"n": 3, "m": 4}).wait(timeout=120)
    live = _events(client, run.id)  # a fresh runner keeps every event it wrote: from memory
    assert live and live[-1]["type"] == "RunFinished"
    some = live[len(live) // 2]["id"]
    live_tail = client._http.get(f"/api/v1/runs/{run.id}/events", headers={"Last-Event-ID": str(some)}).text
    runner.stop()
    runner.start()  # a restarted runner has nothing in memory: the same ids come from the table
    client = runner.client()
    assert _events(client, run.id) == live
    assert client._http.get(f"/api/v1/runs/{run.id}/events", headers={"Last-Event-ID": str(some)}).text == live_tail
    # and a new run's events come from memory again, after the table's
    run2 = client.submit(fastpath, {"n": 3, "m": 5}).wait(timeout=120)
    ev2 = _events(client, run2.id)
    assert ev2[0]["id"] > live[-1]["id"] and ev2[-1]["type"] == "RunFinished"


@component(name="fp_inc", cache=False)
def inc(x: int) -> int:
    if x == -1:
        raise ValueError("x is -1")
    return x + 1


@pipeline(name="fp-wide")
def wide(x: int = 0):
    for _ in range(60):
        inc(x=x)


@pipeline(name="fp-long")
def long_chain(x: int = -20):
    s = inc(x=x)
    for _ in range(39):
        s = inc(x=s.output)
    for _ in range(3):
        inc(x=x)


def test_a_wide_fan_out_and_a_chain_failing_midway_end_in_the_states_a_full_scan_gives(nb_client) -> None:
    r = nb_client.submit(wide, {"x": 1}).wait(timeout=600)
    assert {s["state"] for s in r.snapshot()["steps"]} == {"succeeded"} and len(r.snapshot()["steps"]) == 60
    # x=-20: step 20 gets -1 and fails; the 20 after it are skipped, the 3 side steps still run
    bad = nb_client.submit(long_chain, {"x": -20}).wait(timeout=600, raise_on_failure=False)
    snap = bad.snapshot()
    assert snap["state"] == "failed"
    states = [s["state"] for s in snap["steps"]]
    assert states[:19] == ["succeeded"] * 19 and states[19] == "failed"
    assert states[20:40] == ["skipped"] * 20 and states[40:] == ["succeeded"] * 3
    assert snap["steps"][20]["reason"] == f"upstream step '{snap['steps'][19]['name']}' failed"


def test_a_step_after_cache_hits_starts_in_the_same_tick_as_they_end(nb_client) -> None:
    """The live loop's usual re-run: a parameter of the last step changed, the steps before it are
    cache hits. The changed step starts as soon as they end (it waited for the loop's idle tick, 5 s,
    for each hit that made a step ready): inside ``POST /runs``, whose answer shows it started."""
    nb_client.submit(cached_then_changed, {"x": 1, "k": 0}).wait(timeout=120)
    r = nb_client.submit(cached_then_changed, {"x": 1, "k": 5})
    states = {s["name"]: s["state"] for s in r.last_snapshot["steps"]}
    assert states["fp_plus"] == states["fp_plus-2"] == "cached", states
    assert states["fp_add"] in ("running", "succeeded"), states  # not "pending" until a later tick
    r.wait(timeout=120)
    assert r.output("fp_add") == 8
