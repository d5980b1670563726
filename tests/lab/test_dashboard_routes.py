"""The Lab dashboard routes (runs page, live events, compare, lineage) on a real Jupyter server
and the real embedded runner: runs are submitted with the SDK, read back only through
``/nbpipe/api/dashboard/...`` as the browser does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

PIPELINE = textwrap.dedent('''
    import time
    from nbpipe import Input, Metrics, Model, Output, component, pipeline

    @component
    def prepare(n: int) -> list:
        return list(range(n))

    @component
    def train(data: list, model: Output[Model], lr: float = 0.1) -> None:
        with open(model.path, "w") as fh:
            fh.write(f"weights {sum(data) * lr}")

    @component
    def evaluate(model: Input[Model], metrics: Output[Metrics], threshold: float = 0.0) -> float:
        with open(model.path) as fh:
            w = float(fh.read().split()[1])
        metrics.log_metric("accuracy", min(1.0, w / 10))
        return w - threshold

    @pipeline
    def dash_demo(n: int = 5, lr: float = 0.5, threshold: float = 0.0):
        m = train(data=prepare(n=n).output, lr=lr)
        evaluate(model=m.outputs["model"], threshold=threshold)

    @component(cache=False)
    def slow(seconds: float) -> int:
        time.sleep(seconds)
        return 1

    @pipeline
    def slow_demo(seconds: float = 1.0):
        slow(seconds=seconds)
''')


@pytest.fixture
def pipes(tmp_path: Path, nbpipe_home: Path) -> Any:
    (tmp_path / "dash_pipes.py").write_text(PIPELINE)
    sys.path.insert(0, str(tmp_path))
    sys.modules.pop("dash_pipes", None)
    try:
        import dash_pipes
    finally:
        sys.path.remove(str(tmp_path))
    return dash_pipes


async def submit(pipe: Any, params: dict[str, Any], experiment: str = "Default", notebook: str | None = None,
                 wait: bool = True, labels: dict[str, str] | None = None) -> dict[str, Any]:
    from nbpipe import Client

    def go() -> dict[str, Any]:
        run = Client().submit(pipe, params, experiment=experiment,
                              labels=labels or ({"notebook": notebook} if notebook else None))
        return run.wait(timeout=300, raise_on_failure=False).snapshot() if wait else run.snapshot()

    return await asyncio.to_thread(go)


ROUTES = ["dashboard/runs", "dashboard/events", "dashboard/compare", "dashboard/lineage/abc/step"]


@pytest.mark.parametrize("path", ROUTES)
async def test_dashboard_routes_refuse_requests_without_a_token(jp_fetch: Any, path: str) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await jp_fetch("nbpipe", "api", *path.split("/"), headers={"Authorization": ""}, follow_redirects=False)
    assert info.value.code in (401, 403)


async def test_runs_page_filters_searches_and_pages(api: Any, pipes: Any, jp_root_dir: Path) -> None:
    a = await submit(pipes.dash_demo, {"threshold": 0.0}, "exp-a", "work/alpha.ipynb")
    b = await submit(pipes.dash_demo, {"threshold": 1.0}, "exp-a", "work/beta.ipynb")
    c = await submit(pipes.dash_demo, {"threshold": 2.0}, "exp-b", "work/alpha.ipynb")
    newest_first = [c["id"], b["id"], a["id"]]

    code, page = await api("dashboard/runs", facets="1")
    assert code == 200, page
    assert [r["id"] for r in page["runs"]] == newest_first and page["total"] == 3
    assert page["runs"][0]["step_counts"] == {"cached": 2, "succeeded": 1}
    assert page["last_event_id"] > 0
    f = page["facets"]
    assert {v["value"]: v["runs"] for v in f["experiments"]} == {"exp-a": 2, "exp-b": 1}
    assert {v["value"]: v["runs"] for v in f["notebooks"]} == {"work/alpha.ipynb": 2, "work/beta.ipynb": 1}
    assert f["pipelines"] == [{"value": "dash-demo", "runs": 3}]
    assert f["states"] == {"queued": 0, "running": 0, "succeeded": 3, "failed": 0, "cancelled": 0}

    _, page = await api("dashboard/runs", experiment="exp-a")
    assert [r["id"] for r in page["runs"]] == [b["id"], a["id"]] and page["total"] == 2
    _, page = await api("dashboard/runs", notebook="work/alpha.ipynb")
    assert [r["id"] for r in page["runs"]] == [c["id"], a["id"]]
    _, page = await api("dashboard/runs", state="failed")
    assert page["runs"] == [] and page["total"] == 0
    _, page = await api("dashboard/runs", q="BETA")  # search is case-insensitive and reaches the notebook label
    assert [r["id"] for r in page["runs"]] == [b["id"]]
    _, page = await api("dashboard/runs", q=a["id"][-6:])
    assert a["id"] in [r["id"] for r in page["runs"]]
    _, page = await api("dashboard/runs", q="100%_")  # LIKE wildcards are literal
    assert page["total"] == 0
    _, page = await api("dashboard/runs", limit="2", offset="2")
    assert [r["id"] for r in page["runs"]] == [a["id"]] and page["total"] == 3 and page["offset"] == 2

    # A run submitted from the notebook's kernel (%nbpipe run / nbpipe.run) names it by its absolute
    # path; the notebook filter and its facet count it with the panel's runs of that notebook.
    (jp_root_dir / "work").mkdir(exist_ok=True)
    k = await submit(pipes.dash_demo, {"threshold": 3.0}, "exp-b",
                     labels={"kernel_notebook": str(jp_root_dir / "work" / "alpha.ipynb")})
    outside = await submit(pipes.dash_demo, {"threshold": 4.0}, "exp-b",
                           labels={"kernel_notebook": "/elsewhere/work/alpha.ipynb"})
    _, page = await api("dashboard/runs", notebook="work/alpha.ipynb", facets="1")
    assert [r["id"] for r in page["runs"]] == [k["id"], c["id"], a["id"]] and page["total"] == 3
    assert {v["value"]: v["runs"] for v in page["facets"]["notebooks"]} == {"work/alpha.ipynb": 3, "work/beta.ipynb": 1}
    assert "kernel_notebooks" not in page["facets"]
    _, page = await api("dashboard/runs", notebook="work/beta.ipynb")
    assert [r["id"] for r in page["runs"]] == [b["id"]]
    assert outside["id"] not in [r["id"] for r in (await api("dashboard/runs", notebook="work/alpha.ipynb"))[1]["runs"]]

    code, err = await api("dashboard/runs", state="done")
    assert code == 400 and "Unknown run state 'done'" in err["message"] and "succeeded" in err["message"]
    code, err = await api("dashboard/runs", limit="lots")
    assert code == 400 and "integers" in err["message"]


async def test_compare_is_nbpipe_compare_with_differences(api: Any, pipes: Any) -> None:
    from nbpipe import Client, compare

    runs = [await submit(pipes.dash_demo, {"threshold": t, "lr": 0.5}) for t in (0.0, 1.0, 2.5)]
    ids = [r["id"] for r in runs]
    code, table = await api("dashboard/compare", runs=",".join(ids))
    assert code == 200, table
    assert [r["id"] for r in table["runs"]] == ids
    assert table["params"] == ["lr", "n", "threshold"] and table["differ"] == ["threshold"]
    assert "evaluate.output" in table["metrics"] and "evaluate.metrics.accuracy" in table["metrics"]

    df = await asyncio.to_thread(lambda: compare(ids, client=Client()))
    for r in table["runs"]:
        row = df.loc[r["id"]]
        for p, v in r["params"].items():
            assert row[f"param.{p}"] == v
        for m, v in r["metrics"].items():
            assert row[m] == pytest.approx(v)
    assert [r["metrics"]["evaluate.output"] for r in table["runs"]] == pytest.approx([5.0, 4.0, 2.5])

    code, err = await api("dashboard/compare", runs=",".join(["x"] * 3 + [f"r{i}" for i in range(11)]))
    assert code == 400 and "1 to 10 runs" in err["message"]
    code, err = await api("dashboard/compare", runs=f"{ids[0]},nope")
    assert code == 404 and "No run nope" in err["message"]


async def test_lineage_through_the_lab_server(api: Any, pipes: Any) -> None:
    first = await submit(pipes.dash_demo, {"threshold": 0.0})
    second = await submit(pipes.dash_demo, {"threshold": 3.0})
    code, body = await api(f"dashboard/lineage/{second['id']}/train", output="model")
    assert code == 200, body
    [art] = body["artifacts"]
    assert art["cached"] and art["producer"]["run"] == first["id"]
    assert {(c["run"], c["step"]) for c in art["consumers"]} == {(first["id"], "evaluate"), (second["id"], "evaluate")}
    code, err = await api(f"dashboard/lineage/{second['id']}/train", output="weights")
    assert code == 404 and "has no output 'weights'" in err["message"] and "Its outputs: model" in err["message"]
    code, err = await api("dashboard/lineage/nope/train")
    assert code == 404 and "No run nope" in err["message"]


class _Done(Exception):
    pass


async def test_events_stream_every_run_without_log_lines(jp_fetch: Any, api: Any, pipes: Any) -> None:
    _, page = await api("dashboard/runs")
    after = page["last_event_id"]
    run = await submit(pipes.slow_demo, {"seconds": 0.2}, wait=False)
    seen: list[dict[str, Any]] = []
    buffer = ""

    def on_chunk(chunk: bytes) -> None:
        nonlocal buffer
        buffer += chunk.decode()
        *frames, buffer = buffer.split("\n\n")
        for frame in frames:
            data = [line[6:] for line in frame.splitlines() if line.startswith("data: ")]
            if data:
                seen.append(json.loads(data[0]))
        if any(e["type"] == "RunFinished" and e["run_id"] == run["id"] for e in seen):
            raise _Done  # the all-runs stream never ends by itself

    with pytest.raises(Exception) as info:
        await jp_fetch("nbpipe", "api", "dashboard", "events", params={"after": after},
                       streaming_callback=on_chunk, request_timeout=120)
    assert not isinstance(info.value, tornado.httpclient.HTTPClientError) or info.value.code == 599, info.value
    types = [e["type"] for e in seen if e["run_id"] == run["id"]]
    assert types[0] == "RunCreated" and types[-1] == "RunFinished"
    assert {"RunStarted", "StepStarted", "StepFinished"} <= set(types)
    assert "StepLog" not in types and "ArtifactSaved" not in types
    assert all(e["id"] > after for e in seen)


async def test_an_unreachable_runner_is_a_502_that_names_it(api: Any, nbpipe_home: Path) -> None:
    code, _ = await api("settings", "PUT", {"runner_url": "http://127.0.0.1:9/"})
    assert code == 200
    for path, params in (("dashboard/runs", {}), ("dashboard/events", {}), ("dashboard/compare", {"runs": "a,b"}),
                         ("dashboard/lineage/a/b", {})):
        code, err = await api(path, **params)
        assert code == 502, (path, code, err)
        assert "No runner at http://127.0.0.1:9" in err["message"], (path, err)


async def test_a_cached_step_names_the_run_it_was_reused_from(api: Any, pipes: Any) -> None:
    first = await submit(pipes.dash_demo, {"threshold": 0.0})
    again = await submit(pipes.dash_demo, {"threshold": 1.0})  # prepare and train come from the cache
    code, snap = await api(f"runs/{again['id']}")
    assert code == 200, snap
    steps = {s["name"]: s for s in snap["steps"]}
    assert steps["prepare"]["state"] == "cached" and steps["train"]["state"] == "cached"
    for name in ("prepare", "train"):
        assert steps[name]["reason"] == f"reused from run {first['id']} by the cache", steps[name]
        assert steps[name]["reused_from"] == {"run": first["id"], "step": name}
        assert steps[name]["outputs"], "a cached step shows the outputs it reused"
    assert steps["evaluate"]["state"] == "succeeded" and "reused_from" not in steps["evaluate"]


async def test_both_run_lists_name_the_float_parameters(api: Any, pipes: Any) -> None:
    """QA: the panel's run rows showed a run of threshold=1.0 as threshold=1 (JSON makes 1.0 the JS
    number 1); the lists now name the float parameters, as a run's snapshot does (float_params)."""
    run = await submit(pipes.dash_demo, {"n": 3, "threshold": 1.0})
    code, panel = await api("runs")  # the panel's run list
    assert code == 200, panel
    code, page = await api("dashboard/runs")  # the Runs view
    assert code == 200, page
    for row in (panel["runs"][0], page["runs"][0]):
        assert row["id"] == run["id"] and row["params"] == {"n": 3, "lr": 0.5, "threshold": 1.0}, row
        assert sorted(row["float_params"]) == ["lr", "threshold"], row
    code, snap = await api(f"runs/{run['id']}")  # the run page's convention, for the same run
    assert sorted(snap["float_params"]) == ["lr", "threshold"]
