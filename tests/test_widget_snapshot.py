"""Saved notebooks keep their run graphs: the static snapshot next to the live widget.

Unit tests of the SVG renderer (every state, hostile names, 500 steps stay small, loops
collapse), then a real kernel (nbclient) that runs pipelines with the widget shown, saves the
notebook and reads the file back: the output carries the final graph, never "running", and an
edited, re-run cell shows its new run.
"""

from __future__ import annotations

import json
import re
import xml.dom.minidom
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from nbpipe.widgets import snapshot as snap_mod
from nbpipe.widgets.snapshot import MIME, bundle, render_svg, summary

STATES = ("pending", "running", "retrying", "succeeded", "cached", "failed", "cancelled", "skipped")
SVG, WIDGET = "image/svg+xml", "application/vnd.jupyter.widget-view+json"


def step(name: str, state: str = "succeeded", up: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
    return {"name": name, "state": state, "upstream": list(up), "duration": kw.pop("duration", 1.25), **kw}


def texts(svg: str) -> list[str]:
    """Every text node of the SVG (parsed as XML: also proves it is well-formed)."""
    doc = xml.dom.minidom.parseString(svg)
    out = []
    for node in doc.getElementsByTagName("text"):
        out.append("".join(c.data if c.nodeType == c.TEXT_NODE else "".join(g.data for g in c.childNodes)
                           for c in node.childNodes))
    return out


def test_every_state_has_its_colour_icon_and_label() -> None:
    steps = [step(s, s, () if i == 0 else (STATES[i - 1],)) for i, s in enumerate(STATES)]
    svg = render_svg({"id": "r9", "name": "digits", "state": "failed", "duration": 5.61, "steps": steps})
    shown = texts(svg)
    assert shown[0] == "digits" and shown[1] == "✗ failed in 5.6 s"
    assert "run r9 · 8 steps:" in shown[2]
    for state in STATES:
        i = shown.index(state)  # the node's title line, then its state line
        meta = shown[i + 1]
        assert meta.startswith(state), (state, meta)
        assert shown[i - 1] == snap_mod.ICONS[state]
        assert (" · 1.2 s" in meta) == (state not in ("pending", "skipped"))
        colour = snap_mod.COLORS[state]
        assert f".{snap_mod._CLS[state]}{{fill:{colour}}}" in svg
    assert "<script" not in svg and "href" not in svg and "http://" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_summary_says_how_the_run_ended_never_running() -> None:
    done = {"id": "r1", "name": "digits", "state": "succeeded", "duration": 5.63,
            "steps": [step(n) for n in "abcd"]}
    assert summary(done) == "nbpipe run r1 digits: succeeded in 5.6 s (4 steps: 4 succeeded)"
    mixed = {**done, "state": "failed", "reason": "Step 'c' failed\nmore", "duration": 75,
             "steps": [step("a", "cached"), step("b"), step("c", "failed"), step("d", "skipped")]}
    assert summary(mixed) == ("nbpipe run r1 digits: failed in 1 min 15 s (4 steps: 1 succeeded, 1 cached, "
                              "1 failed, 1 skipped) — Step 'c' failed")
    live = {**done, "state": "running", "duration": None, "steps": [step("a"), step("b", "running")]}
    assert summary(live) == "nbpipe run r1 digits: running (2 steps: 1 running, 1 succeeded)"


def test_hostile_step_names_are_text_not_markup() -> None:
    evil = '<script>go()</script>&\x01\x1b'
    snap = {"id": "r1", "name": '"><svg onload=alert(1)>', "state": "failed",
            "steps": [step("ok"), step(evil, "failed", ("ok",), reason="<img src=x onerror=alert(1)>")]}
    svg = render_svg(snap)
    shown = texts(svg)  # well-formed despite the control characters
    assert '<script>go()</script>&' in shown
    assert "<script" not in svg and "onload=alert" not in svg.replace("onload=alert(1)&gt;", "")
    assert "<img" not in svg and '"><svg' not in svg
    doc = xml.dom.minidom.parseString(svg)
    assert not any(a.startswith("on") for el in doc.getElementsByTagName("*") for a in el.attributes.keys())


def test_500_steps_stay_small_and_readable() -> None:
    steps = [step(f"step_{i:03d}", "failed" if i == 250 else "succeeded",
                  (f"step_{i - 1:03d}",) if i % 10 else ()) for i in range(500)]
    svg = render_svg({"id": "r2", "name": "big", "state": "failed", "steps": steps})
    shown = texts(svg)
    assert len(svg.encode()) < 40_000, len(svg.encode())
    assert sum(1 for t in shown if re.fullmatch(r"[✓✗] step_\d{3}", t)) == 500
    assert "✗ step_250" in shown
    width, height = (int(v) for v in re.search(r'width="(\d+)" height="(\d+)"', svg).groups())
    assert width < 1700 and height < 1000, (width, height)  # wraps into columns, no 20,000 px strip


def test_loops_collapse_to_a_summary_node() -> None:
    steps = [step("prep"), step("train", group="for-1", up=("prep",))]
    steps += [step(f"train-it{i}", "failed" if i == 7 else "succeeded", ("prep",), group="for-1") for i in range(480)]
    steps += [step("report", up=("train",))]
    svg = render_svg({"id": "r3", "name": "sweep", "state": "failed", "steps": steps})
    shown = texts(svg)
    assert shown.count("train") == 1 and not any("train-it" in t for t in shown)
    assert "⟳ 480 iterations · 479 ✓ 1 ✗" in shown
    assert len(svg.encode()) < 4_000
    # a small loop stays open: its iterations are drawn, the template is not
    small = [step("prep"), step("fit", group="for-1", up=("prep",))] + [
        step(f"fit-it{i}", up=("prep",), group="for-1") for i in range(3)]
    shown = texts(render_svg({"id": "r4", "state": "succeeded", "steps": small}))
    assert {"fit-it0", "fit-it1", "fit-it2"} <= set(shown) and "fit" not in shown


def test_branch_and_exit_handler_steps_are_marked_and_durations_read_like_the_live_view() -> None:
    steps = [step("train", duration=0.129), step("deploy", up=("train",), group="condition-1", duration=75),
             step("notify", "skipped", group="exit-1"), step("fold", group="g7", duration=3700)]
    shown = texts(render_svg({"id": "r6", "state": "succeeded", "steps": steps,
                              "groups": [{"id": "g7", "kind": "exit"}]}))
    assert "succeeded · 129 ms" in shown and "◇ succeeded · 1 min 15 s" in shown
    assert "↳ skipped" in shown and "↳ succeeded · 1 h 1 min" in shown


def test_bundle_names_the_run_for_the_lab_extension() -> None:
    b = bundle({"id": "r5", "name": "n", "state": "succeeded", "steps": []}, view="nbpipe-view-1")
    assert b[MIME] == {"run_id": "r5", "name": "n", "state": "succeeded", "view": "nbpipe-view-1", "version": 1}
    assert b[SVG].startswith("<svg") and "No steps." in b[SVG]


# ------------------------------------------------------------------------------ real kernel

SETUP = '''\
import json, os, time
from pathlib import Path
import nbpipe
from nbpipe import component, pipeline

@component(cache=False)
def load(n: int) -> list:
    return list(range(n))

@component(cache=False)
def gate(xs: list, flag: str) -> int:
    import os, time
    if not xs:
        raise ValueError("no rows to count")
    while not os.path.exists(flag):   # the notebook's next cell lets the run finish
        time.sleep(0.05)
    return len(xs)

@component(cache=False)
def report(total: int) -> str:
    return f"total {total}"

@pipeline
def digits(n: int = 3, flag: str = ""):
    report(total=gate(xs=load(n=n), flag=flag))
'''


def _views(cell: Any) -> list[dict[str, Any]]:
    return [o for o in cell.outputs if o.output_type in ("display_data", "execute_result") and WIDGET in o.data]


def test_a_notebook_run_by_nbclient_saves_the_final_graph(nb_home: Path, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    cells = [
        SETUP,
        f"r = nbpipe.run(digits, n=4, flag={str(flag)!r})\nr",  # shown while the gate step is running
        f"assert r.state in ('queued', 'running')\nPath({str(flag)!r}).touch()\nr.wait(timeout=120)\nprint('RUN', r.id)",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)

    saved = nbformat.read(path, as_version=4)
    run_id = re.search(r"RUN (\S+)", "".join(o.get("text", "") for o in saved.cells[2].outputs)).group(1)
    [out] = _views(saved.cells[1])
    data = out.data
    assert re.fullmatch(rf"nbpipe run {run_id} digits [-\d: ]+: succeeded in [^()]+ \(3 steps: 3 succeeded\)",
                        data["text/plain"]), data["text/plain"]
    assert data[MIME]["run_id"] == run_id and data[MIME]["state"] == "succeeded"
    shown = texts(data[SVG])
    for name in ("load", "gate", "report"):
        i = shown.index(name)
        assert shown[i - 1] == "✓" and shown[i + 1].startswith("succeeded · "), shown
    assert "running" not in json.dumps(data)  # neither the text, nor the SVG, nor the nbpipe entry
    assert out.get("transient") is None  # the display id lives only in the kernel's messages
    nbformat.validate(saved)

    # nbviewer's renderer (nbconvert's HTML export) shows the graph of a notebook saved by Lab (which
    # keeps no widget state by default; nbclient does, then the viewer tries the widget itself): it
    # skips the widget view and takes the SVG, as an <img> (nothing in it runs)
    import base64

    from nbconvert import HTMLExporter

    as_lab_saves = nbformat.from_dict(json.loads(json.dumps(saved)))
    as_lab_saves.metadata.pop("widgets", None)
    html, _ = HTMLExporter().from_notebook_node(as_lab_saves)
    assert f'src="data:image/svg+xml;base64,{base64.b64encode(data[SVG].encode()).decode()}"' in html
    assert 'type="application/vnd.jupyter.widget-view+json"' not in html

    # the user edits the cell (another parameter) and runs it again: the output shows the new run
    flag.unlink()
    saved.cells[1].source = saved.cells[1].source.replace("n=4", "n=7")
    NotebookClient(saved, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(saved, path)
    again = nbformat.read(path, as_version=4)
    run2 = re.search(r"RUN (\S+)", "".join(o.get("text", "") for o in again.cells[2].outputs)).group(1)
    [out2] = _views(again.cells[1])
    assert run2 != run_id and out2.data[MIME]["run_id"] == run2
    assert out2.data["text/plain"].startswith(f"nbpipe run {run2} digits ") and ": succeeded in " in out2.data["text/plain"]
    assert "running" not in json.dumps(out2.data)


def test_twice_in_one_kernel_and_a_failed_run(nb_home: Path, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    flag.touch()
    cells = [
        SETUP,
        f"a = nbpipe.run(digits, n=2, flag={str(flag)!r}, wait=True)\na",  # finished before it is shown
        f"b = nbpipe.run(digits, n=0, flag={str(flag)!r})\nb",
        "b.wait(timeout=120, raise_on_failure=False)\nprint('RUNS', a.id, b.id)",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    a, b = re.search(r"RUNS (\S+) (\S+)", "".join(o.get("text", "") for o in nb.cells[3].outputs)).groups()
    [first] = _views(nb.cells[1])
    [second] = _views(nb.cells[2])
    assert first.data[MIME]["run_id"] == a and "succeeded" in first.data["text/plain"]
    assert second.data[MIME]["run_id"] == b and second.data[MIME]["state"] == "failed"
    assert re.match(rf"nbpipe run {b} digits .*: failed in .* \(3 steps: .*1 failed", second.data["text/plain"])
    shown = texts(second.data[SVG])
    assert shown[shown.index("gate") - 1] == "✗" and shown[shown.index("load") - 1] == "✓" and "running" not in json.dumps(second.data)

