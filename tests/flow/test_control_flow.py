"""Control flow on the real runner: ParallelFor, Collected, If/Elif/Else, ExitHandler, composition, re-run.

Definition-time checks run in milliseconds; the rest submit to a real runner process
(``nb_client``) with real step processes.
"""

from __future__ import annotations

import json
import time

import pytest

import nbpipe
from nbpipe import component, pipeline
from nbpipe.errors import DefinitionError, PackageError


@component(cache=False)
def numbers(n: int) -> list:
    return list(range(n))


@component(cache=False)
def offset() -> int:
    return 1000


@component(cache=False)
def add(x: int, y: int) -> int:
    return x + y


@component(cache=False)
def total(xs: list) -> int:
    return sum(xs)


@component(cache=False)
def echo(x: list) -> list:
    return x


@component(cache=False)
def describe(name: str, lr: float) -> str:
    return f"{name}@{lr}"


@component(cache=False)
def stamp(i: int, folder: str) -> dict:
    """Items 0 and 1 wait for each other (a rendezvous, so parallelism shows under any load)."""
    import os
    import time

    t0 = time.time()
    open(os.path.join(folder, str(i)), "w").close()
    while i < 2 and len(os.listdir(folder)) < 2:
        time.sleep(0.01)
    return {"i": i, "start": t0, "end": time.time()}


# ==================================================================== definition time
def test_loop_output_outside_the_loop_needs_collected() -> None:
    with pytest.raises(DefinitionError, match=r"from outside that loop.*Collected"):
        @pipeline
        def bad():
            with nbpipe.ParallelFor([1, 2]) as x:
                s = add(x=x, y=1)
            total(xs=s.output)


def test_elif_needs_an_if_and_conditions_are_not_bools() -> None:
    with pytest.raises(DefinitionError, match="right after an nbpipe.If"):
        @pipeline
        def bad(n: int = 1):
            with nbpipe.Elif(n > 1):
                add(x=n, y=1)
    with pytest.raises(DefinitionError, match="nbpipe.If"):
        @pipeline
        def bad2(n: int = 1):
            if n > 1:
                add(x=n, y=1)


def test_comparisons_keep_placeholders_hashable() -> None:
    seen = {}

    @pipeline
    def p(n: int = 1):
        s = add(x=n, y=1)
        seen[s.output] = 1
        seen[n] = 2
        assert isinstance(s.output == 3, nbpipe.Condition) and len({n, n}) == 1

    assert sorted(seen.values()) == [1, 2]
    assert p.spec["version"] == 1  # no control flow: still a version-1 package


def test_v1_packages_still_load_and_v1_rejects_v2_constructs(nb_client) -> None:
    @pipeline
    def plain(n: int = 2):
        add(x=n, y=3)

    pkg = nbpipe.read_package(nbpipe.build_package(plain))
    assert pkg.spec["version"] == 1
    assert nb_client.submit(pkg.data).wait(timeout=60).output("add") == 5

    @pipeline
    def looped():
        with nbpipe.ParallelFor([1, 2]) as x:
            add(x=x, y=1)

    spec = dict(looped.spec, version=1)
    spec.pop("groups")
    with pytest.raises(PackageError, match="invalid at steps/0/inputs/x"):
        from nbpipe.package import check_spec

        check_spec(spec)


# ==================================================================== loops
def test_parallel_for_over_upstream_output_passes_both_item_and_upstream(nb_client) -> None:
    """KFP's local runner passed the loop item where an upstream output belonged; here each is right."""

    @pipeline
    def p(n: int = 4):
        items = numbers(n=n)
        off = offset()
        with nbpipe.ParallelFor(items.output, parallelism=2) as x:
            s = add(x=x, y=off.output)
        echo(x=nbpipe.Collected(s.output))

    run = nb_client.submit(p, {"n": 4}).wait(timeout=90)
    assert run.output("echo") == [1000, 1001, 1002, 1003]
    steps = run.steps
    assert [steps[f"add-it{i}"]["group"] for i in range(4)] == [p.spec["groups"][0]["id"]] * 4
    assert steps["add-it2"]["display_name"] == "add [2]"
    assert steps["add"]["state"] == "succeeded" and "4 of 4 iterations" in steps["add"]["reason"]
    added = [e for e in run.events(follow=False) if e.type == "StepsAdded"]
    assert len(added) == 1 and added[0].items == 4 and [s["name"] for s in added[0].steps][:2] == ["add-it0", "add-it1"]


def test_nested_loops_dict_fields_and_collected_order(nb_client) -> None:
    @pipeline
    def p(configs: list = [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 1.0}]):
        with nbpipe.ParallelFor(configs) as cfg:
            with nbpipe.ParallelFor([1, 2, 3]) as k:
                s = add(x=k, y=10)
            describe(name=cfg.name, lr=cfg.lr)
        echo(x=nbpipe.Collected(s.output))

    run = nb_client.submit(p).wait(timeout=90)
    assert run.output("echo") == [[11, 12, 13], [11, 12, 13]]
    assert run.output("describe-it1") == "b@1.0"
    assert run.steps["add-it1-it2"]["state"] == "succeeded"


def test_hundred_items_never_more_than_parallelism_at_once(nb_client, tmp_path) -> None:
    @pipeline
    def p(folder: str):
        with nbpipe.ParallelFor(list(range(100)), parallelism=4) as i:
            s = stamp(i=i, folder=folder)
        echo(x=nbpipe.Collected(s.output))

    t0 = time.time()
    run = nb_client.submit(p, {"folder": str(tmp_path)}).wait(timeout=600)
    wall = time.time() - t0
    rows = run.output("echo")
    assert [r["i"] for r in rows] == list(range(100))
    spans = [(s["started_at"], s["finished_at"]) for n, s in run.steps.items() if n.startswith("stamp-it")]
    assert len(spans) == 100

    def peak(intervals: list[tuple[float, float]]) -> int:
        marks = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
        cur = best = 0
        for _, d in marks:
            cur += d
            best = max(best, cur)
        return best

    runner_peak, inside_peak = peak(spans), peak([(r["start"], r["end"]) for r in rows])
    print(f"\n100-item ParallelFor: wall {wall:.1f} s, peak {runner_peak} (runner), {inside_peak} (in steps)")
    assert runner_peak <= 4 and inside_peak <= 4
    assert inside_peak >= 2, "the loop never ran iterations in parallel"


# ==================================================================== conditions
@component(cache=False)
def score(x: int) -> float:
    return x / 10


@component(cache=False)
def label(text: str) -> str:
    return text


@pipeline
def branches(x: int = 5):
    s = score(x=x)
    with nbpipe.If(s.output >= 0.8):
        hi = label(text="high")
    with nbpipe.Elif(s.output >= 0.4):
        label(text="mid")
    with nbpipe.Else():
        label(text="low")
    label(text=hi.output)


def test_condition_on_upstream_output_skips_the_false_branches(nb_client) -> None:
    run = nb_client.submit(branches, {"x": 5}).wait(timeout=60)
    st = {n: s["state"] for n, s in run.steps.items()}
    assert (st["label"], st["label-2"], st["label-3"]) == ("skipped", "succeeded", "skipped")
    assert run.output("label-2") == "mid"
    assert "score.output=0.5 >= 0.8" in run.steps["label"]["reason"]
    assert st["label-4"] == "skipped" and "upstream step 'label' skipped" in run.steps["label-4"]["reason"]
    assert run.state == "succeeded"
    run = nb_client.submit(branches, {"x": 9}).wait(timeout=60)
    assert run.output("label-4") == "high" and run.steps["label-3"]["state"] == "skipped"


def test_condition_on_a_parameter_with_in(nb_client) -> None:
    @pipeline
    def p(mode: str = "fast"):
        with nbpipe.If(add(x=1, y=1).output.is_in([2, 3]) & (mode == "fast")):
            label(text=mode)

    run = nb_client.submit(p).wait(timeout=60)
    assert run.output("label") == "fast"


# ==================================================================== exit handler
@component(cache=False)
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


@component(cache=False)
def wait_long(x: int) -> int:
    import time

    time.sleep(60)
    return x


@component(cache=False)
def cleanup(status: dict, run_id: str) -> str:
    return json.dumps({"status": status, "run_id": run_id})


def test_exit_handler_runs_after_a_failure_and_sees_it(nb_client) -> None:
    @pipeline
    def p():
        c = cleanup(status=nbpipe.RUN_STATUS, run_id=nbpipe.RUN_ID)
        with nbpipe.ExitHandler(c):
            b = boom(x=1)
            add(x=b.output, y=1)

    run = nb_client.submit(p).wait(timeout=60, raise_on_failure=False)
    assert run.state == "failed"
    out = json.loads(run.output("cleanup"))
    assert out["run_id"] == run.id
    assert out["status"]["state"] == "failed" and out["status"]["failed_steps"] == ["boom"]
    assert run.steps["add"]["state"] == "skipped"


def test_exit_handler_runs_after_cancel_then_the_run_is_cancelled(nb_client) -> None:
    @pipeline
    def p():
        c = cleanup(status=nbpipe.RUN_STATUS, run_id=nbpipe.RUN_NAME)
        with nbpipe.ExitHandler(c):
            w = wait_long(x=1)
            add(x=w.output, y=1)

    run = nb_client.submit(p)
    deadline = time.time() + 30
    while run.steps["wait_long"]["state"] != "running":
        assert time.time() < deadline
        time.sleep(0.1)
    run.cancel()
    run.wait(timeout=60, raise_on_failure=False)
    steps = run.steps
    assert run.state == "cancelled"
    assert steps["wait_long"]["state"] == "cancelled" and steps["add"]["state"] == "cancelled"
    assert steps["cleanup"]["state"] == "succeeded"
    out = json.loads(run.output("cleanup"))
    assert out["status"]["state"] == "cancelled" and out["run_id"] == run.name


# ==================================================================== composition and re-run
@pipeline
def inner(v: int = 1, w: int = 2):
    a = add(x=v, y=w)
    return add(x=a.output, y=100).output


def test_sub_pipeline_inlines_with_prefixed_steps_and_run_id(nb_client) -> None:
    @pipeline
    def outer(n: int = 5):
        r = inner(v=n)
        label(text=nbpipe.RUN_ID).after(r.step)
        total(xs=[1, 2]).after(r.step)
        return r

    assert [s["name"] for s in outer.spec["steps"]][:2] == ["inner-add", "inner-add-2"]
    run = nb_client.submit(outer, {"n": 5}).wait(timeout=60)
    assert run.output("inner-add-2") == 107
    assert run.output("label") == run.id


def test_rerun_from_a_step_reuses_loop_outputs_of_the_run(nb_client) -> None:
    @pipeline
    def p(n: int = 3):
        items = numbers(n=n)
        with nbpipe.ParallelFor(items.output) as x:
            s = add(x=x, y=1)
        t = total(xs=nbpipe.Collected(s.output))
        label(text="done").after(t)

    first = nb_client.submit(p).wait(timeout=60)
    again = first.rerun(from_step="total").wait(timeout=60)
    steps = again.steps
    assert again.output("total") == 6
    for name in ("numbers", "add-it0", "add-it1", "add-it2"):
        assert steps[name]["state"] == "cached" and steps[name]["reason"].startswith(f"reused from run {first.id}"), name
    assert steps["total"]["state"] == "succeeded" and steps["label"]["state"] == "succeeded"
