"""Analyze, export and run a notebook through the Lab server extension, against the real runner.

The embedded runner is started on demand in this test's own ``NBPIPE_HOME``; runs go through
``/nbpipe/api`` only, as the panel's do (events through the SSE proxy, logs, artifacts, re-run).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

def sse_events(text: str) -> list[dict[str, Any]]:
    """Decode an SSE body into event dicts, checking each frame's ``id:`` matches its data."""
    events = []
    for frame in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            event = json.loads(fields["data"])
            assert int(fields["id"]) == event["id"] and fields["event"] == event["type"]
            events.append(event)
    return events


async def test_analyze_lists_pipeline_parameters_and_components(api: Any, notebooks: Path) -> None:
    code, body = await api("notebook/analyze", "POST", {"path": "tiny.ipynb"})
    assert code == 200, body
    assert body["pipelines"] == ["tiny"] and body["pipeline"] == "tiny"
    assert body["parameters"] == [
        {"name": "n", "type": "int", "default": 3},
        {"name": "scale", "type": "float", "default": 1.0},
        {"name": "label", "type": "str", "default": "demo"},
        {"name": "verbose", "type": "bool", "default": False},
    ]
    assert [c["name"] for c in body["components"]] == ["make", "total"]
    assert [(s["name"], s["upstream"]) for s in body["steps"]] == [("make", []), ("total", ["make"])]


async def test_analyze_a_notebook_with_two_pipelines_shows_the_first_and_lists_both(
    api: Any, jp_root_dir: Path
) -> None:
    """A second pipeline added to a notebook: the panel (which names none after a reload or on
    opening it) shows the first with the other in its menu; it showed only export's "choose one with
    --pipeline NAME", with no menu to choose from and Run disabled."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (
        "import nbpipe",
        "@nbpipe.component\ndef make(n: int) -> int:\n    return n",
        "@nbpipe.pipeline\ndef daily(n: int = 1):\n    make(n)",
        "@nbpipe.pipeline\ndef sleepy(k: int = 2):\n    make(k)",
    )]
    nbformat.write(nb, jp_root_dir / "two.ipynb")
    code, body = await api("notebook/analyze", "POST", {"path": "two.ipynb"})
    assert code == 200, body
    assert body["pipelines"] == ["daily", "sleepy"] and body["pipeline"] == "daily"
    assert [p["name"] for p in body["parameters"]] == ["n"]
    code, body = await api("notebook/analyze", "POST", {"path": "two.ipynb", "pipeline": "sleepy"})
    assert code == 200 and body["pipeline"] == "sleepy" and [p["name"] for p in body["parameters"]] == ["k"]


async def test_analyze_names_the_broken_cell_and_the_fix(api: Any, notebooks: Path) -> None:
    code, body = await api("notebook/analyze", "POST", {"path": "broken.ipynb"})
    assert code == 422
    assert body["cell"] == 2
    assert "cell 2 has a syntax error" in body["message"]
    assert "Fix the code in cell 2" in body["hint"]


async def test_analyze_a_notebook_without_a_pipeline_says_what_to_add(api: Any, notebooks: Path) -> None:
    code, body = await api("notebook/analyze", "POST", {"path": "plain.ipynb"})
    assert code == 200, body  # a normal answer, not an HTTP error the browser logs
    assert body["pipeline"] is None and body["pipelines"] == [] and body["parameters"] == []
    assert body["reason"]["message"] == "No pipeline in plain.ipynb yet"
    assert "%%component" in body["reason"]["hint"] and "@nbpipe.pipeline" in body["reason"]["hint"]


async def test_analyze_reads_the_editor_content_and_never_the_disk(api: Any, notebooks: Path) -> None:
    """The panel sends the notebook as the editor holds it: unsaved edits count, the file is untouched."""
    path = notebooks / "tiny.ipynb"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    content = json.loads(before)
    for cell in content["cells"]:
        cell["outputs"] = []
        if "def tiny(" in "".join(cell["source"]):
            cell["source"] = "".join(cell["source"]).replace("n: int = 3", "n: int = 7")
    code, body = await api("notebook/analyze", "POST", {"path": "tiny.ipynb", "content": content})
    assert code == 200, body
    assert body["parameters"][0] == {"name": "n", "type": "int", "default": 7}
    code, body = await api("notebook/analyze", "POST", {"path": "unsaved.ipynb", "content": content})
    assert code == 200 and body["pipeline"] == "tiny"  # a notebook never saved yet
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    code, body = await api("notebook/analyze", "POST", {"path": "tiny.ipynb", "content": {"cells": "x"}})
    assert code == 400 and "content must be the notebook's JSON" in body["message"]


async def test_plain_cells_notebook_analyzes_and_runs_from_the_panel_routes(api: Any, notebooks: Path) -> None:
    shutil.copy(REPO_NOTEBOOKS / "plain_cells.ipynb", notebooks / "plain_cells.ipynb")
    code, body = await api("notebook/analyze", "POST", {"path": "plain_cells.ipynb"})
    assert code == 200, body
    assert body["pipelines"] == ["plain_cells"] and body["pipeline"] == "plain_cells"
    assert body["parameters"] == [{"name": "test_size", "type": "float", "default": 0.25},
                                  {"name": "gamma", "type": "float", "default": 0.001}]
    assert [s["name"] for s in body["steps"]] == ["load_data", "split", "train", "evaluate"]
    code, run = await api("notebook/run", "POST", {"path": "plain_cells.ipynb", "params": {"gamma": 1}})
    assert code == 201, run
    code, text = await api(f"runs/{run['id']}/events")
    finished = {e["step"]: e["state"] for e in sse_events(text) if e["type"] == "StepFinished"}
    assert finished == dict.fromkeys(["load_data", "split", "train", "evaluate"], "succeeded")
    code, snap = await api(f"runs/{run['id']}")
    # the form sends "1.0" typed into a float field as the JSON number 1: the run still gets a
    # float, and the snapshot names the float parameters so the views show 1.0, not 1
    assert snap["params"] == {"test_size": 0.25, "gamma": 1.0} and isinstance(snap["params"]["gamma"], float)
    assert sorted(snap["float_params"]) == ["gamma", "test_size"]


async def test_export_writes_package_and_kfp_yaml_beside_the_notebook(api: Any, notebooks: Path) -> None:
    code, body = await api("notebook/export", "POST", {"path": "tiny.ipynb", "format": "nbpipe"})
    assert code == 200, body
    assert body["path"] == "tiny.nbpipe" and body["size"] == (notebooks / "tiny.nbpipe").stat().st_size
    assert zipfile.is_zipfile(notebooks / "tiny.nbpipe")
    code, body = await api("notebook/export", "POST", {"path": "tiny.ipynb", "format": "kfp"})
    assert code == 200, body
    yaml_text = (notebooks / "tiny.kfp.yaml").read_text()
    assert "pipelineInfo" in yaml_text and "make" in yaml_text
    # The panel says which image the YAML references and how to build, push and use it.
    py = "%d.%d" % sys.version_info[:2]
    assert body["image"] is None
    assert body["images"] == [{"image": f"nbpipe/base:py{py}", "steps": ["make", "total"], "default": True, "python": py}]
    assert f"docker push REGISTRY/nbpipe-base:py{py}" in body["note"]
    assert f"enter REGISTRY/nbpipe-base:py{py} as the KFP image below" in body["note"]
    code, body = await api("notebook/export", "POST", {"path": "tiny.ipynb", "format": "kfp", "image": "ghcr.io/me/b:1"})
    assert code == 200 and body["image"] == "ghcr.io/me/b:1" and body["images"][0]["image"] == "ghcr.io/me/b:1"
    assert "image: ghcr.io/me/b:1" in (notebooks / "tiny.kfp.yaml").read_text() and "docker push" not in body["note"]
    code, body = await api("notebook/export", "POST", {"path": "tiny.ipynb", "format": "kfp", "image": "a b"})
    assert code == 422 and "not a container image reference" in body["message"]
    code, body = await api("notebook/export", "POST", {"path": "tiny.ipynb", "format": "zip"})
    assert code == 400 and "Unknown export format 'zip'" in body["message"]


async def test_run_stream_logs_artifacts_list_and_rerun(api: Any, notebooks: Path) -> None:
    code, run = await api("notebook/run", "POST", {"path": "tiny.ipynb", "params": {"n": 5, "scale": 2.0}})
    assert code == 201, run
    assert run["pipeline"] == "tiny" and run["params"]["n"] == 5 and run["params"]["label"] == "demo"
    assert [s["name"] for s in run["steps"]] == ["make", "total"]

    # Events through the SSE proxy, until the runner ends the stream after RunFinished.
    code, text = await api(f"runs/{run['id']}/events", after="0")
    assert code == 200
    events = sse_events(text)
    types = [e["type"] for e in events]
    assert types[0] == "RunCreated" and types[-1] == "RunFinished", types
    assert events[-1]["state"] == "succeeded", events[-1]
    finished = {e["step"]: e["state"] for e in events if e["type"] == "StepFinished"}
    assert finished == {"make": "succeeded", "total": "succeeded"}
    # Resuming after an id returns only later events.
    code, text = await api(f"runs/{run['id']}/events", after=str(events[-2]["id"]))
    assert [e["id"] for e in sse_events(text)] == [events[-1]["id"]]

    code, snap = await api(f"runs/{run['id']}")
    assert code == 200 and snap["state"] == "succeeded"
    code, log = await api(f"runs/{run['id']}/steps/make/logs")
    assert code == 200 and "making 5 numbers" in log

    out = snap["steps"][1]["outputs"]["output"]
    code, data = await api(f"artifacts/{out['digest']}")
    assert code == 200 and data  # octet-stream comes back as text here; the bytes are the stored value
    code, body = await api("runs/nope-such-run")
    assert code == 404 and "No run nope-such-run" in body["message"]

    code, listing = await api("runs", limit="10")
    assert code == 200
    row = next(r for r in listing["runs"] if r["id"] == run["id"])
    assert row["labels"] == {"notebook": "tiny.ipynb"} and row["state"] == "succeeded"
    assert row["params"]["scale"] == 2.0 and row["duration"] > 0

    code, again = await api(f"runs/{run['id']}/rerun", "POST", {"from_step": "total"})
    assert code == 201, again
    assert again["id"] != run["id"] and again["params"] == run["params"]
    code, text = await api(f"runs/{again['id']}/events")
    assert sse_events(text)[-1]["state"] == "succeeded"
    code, listing = await api("runs")
    assert [r["id"] for r in listing["runs"][:2]] == [again["id"], run["id"]]  # newest first

    # The same parameters once more: every step comes from the cache, already finished in the
    # answer, and each names the run it was reused from (not only "from the cache").
    code, cached = await api("notebook/run", "POST", {"path": "tiny.ipynb", "params": {"n": 5, "scale": 2.0}})
    assert code == 201 and cached["state"] == "succeeded", cached
    assert {s["state"] for s in cached["steps"]} == {"cached"}
    assert all(s["reason"].startswith("reused from run r") and s["reused_from"]["run"] in (run["id"], again["id"])
               for s in cached["steps"]), [s["reason"] for s in cached["steps"]]


async def test_run_with_a_bad_parameter_reports_the_runner_message(api: Any, notebooks: Path) -> None:
    code, body = await api("notebook/run", "POST", {"path": "tiny.ipynb", "params": {"n": "lots"}})
    assert code == 400, body
    assert "n" in body["message"] and "int" in body["message"]


@pytest.mark.parametrize(
    "mime,expected", [("image/png", "image/png"), ("text/html", "application/octet-stream")]
)
async def test_artifact_media_type_is_only_a_known_preview_type(
    api: Any, notebooks: Path, jp_fetch: Any, mime: str, expected: str
) -> None:
    code, run = await api("notebook/run", "POST", {"path": "tiny.ipynb", "params": {}})
    assert code == 201, run
    await api(f"runs/{run['id']}/events")
    code, snap = await api(f"runs/{run['id']}")
    digest = snap["steps"][0]["outputs"]["output"]["digest"]
    resp = await jp_fetch("nbpipe", "api", "artifacts", digest, params={"mime": mime})
    assert resp.headers["Content-Type"] == expected
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    from nbpipe.client import Client

    assert resp.body == Client().artifact(digest)


async def test_cancel_a_running_run_through_the_panel_routes(api: Any, notebooks: Path) -> None:
    code, run = await api("notebook/run", "POST", {"path": "slow.ipynb", "params": {"seconds": 120}})
    assert code == 201, run
    for _ in range(300):  # wait (bounded) until the step is running
        code, snap = await api(f"runs/{run['id']}")
        if snap["steps"][0]["state"] == "running":
            break
        await asyncio.sleep(0.1)
    assert snap["steps"][0]["state"] == "running", snap
    code, body = await api(f"runs/{run['id']}/cancel", "POST")
    assert code == 200 and body["cancelling"] is True, body
    code, text = await api(f"runs/{run['id']}/events")
    final = sse_events(text)[-1]
    assert final["type"] == "RunFinished" and final["state"] == "cancelled", final
    code, snap = await api(f"runs/{run['id']}")
    assert snap["state"] == "cancelled" and snap["steps"][1]["state"] in ("cancelled", "skipped")
