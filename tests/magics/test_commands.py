"""``%nbpipe`` commands and the RunView widget against a real runner process (no fakes).

The shell is a real IPython shell in this process; ``%nbpipe config runner=URL`` points it at
the module's runner (``nb_runner`` from the root conftest), so these tests also exercise config.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from IPython.core.error import UsageError

from nbpipe.events import STEP_OK
from nbpipe.widgets import RunView

WAIT = 240  # seconds; steps are real processes on a shared 2-core machine


@pytest.fixture()
def sh(ip: Any, nb_runner: Any) -> Any:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    return ip


def _view(sh: Any) -> RunView:
    cmds = sh.magics.commands
    assert cmds.last_run is not None
    return cmds.views[cmds.last_run.id]


def test_run_plain_cells_widget_and_pull(sh: Any, capsys: Any) -> None:
    sh.run_cell("import time\nn = 4\ntag = 'x'")
    sh.run_cell_magic(
        "component", "make", "time.sleep(1.0)\nxs = [i * i for i in range(n)]\nprint('made', xs)"
    )
    sh.run_cell_magic("component", "summarize", "total = sum(xs)\nlabel = f'{tag}{total}'")
    updates: list[float] = []
    started = time.time()
    sh.run_line_magic("nbpipe", "run n=5")
    returned = time.time()
    view = _view(sh)
    view.observe(lambda _change: updates.append(time.monotonic()), names="snapshot")
    assert view.wait(WAIT), view.error
    snap = view.snapshot  # the synced trait, as the front end has it
    assert snap["state"] == "succeeded"
    assert {s["name"]: s["state"] in STEP_OK for s in snap["steps"]} == {"make": True, "summarize": True}
    assert returned - started < snap["finished_at"] - started  # %nbpipe run returned before the run ended
    assert all(b - a >= view.interval * 0.9 for a, b in itertools.pairwise(updates))  # throttled
    sh.run_cell("del xs, total, label")
    sh.run_line_magic("nbpipe", "pull")
    assert (sh.user_ns["xs"], sh.user_ns["total"], sh.user_ns["label"]) == ([0, 1, 4, 9, 16], 30, "x30")
    out = capsys.readouterr().out
    assert f"Run {view.run.id} succeeded. Loaded: " in out
    assert all(part in out for part in ("xs (list)", "total (int)", "label (str)"))
    run_id = view.run.id
    sh.run_line_magic("nbpipe", f"logs {run_id} make")
    assert "made [0, 1, 4, 9, 16]" in capsys.readouterr().out
    sh.run_line_magic("nbpipe", "runs")
    assert run_id in capsys.readouterr().out


def test_failed_step_pull_loads_its_inputs(sh: Any, capsys: Any) -> None:
    sh.run_cell_magic(
        "component",
        "",
        "def check(x: int) -> int:\n    if x > 1:\n        raise ValueError(f'x={x} is too big')\n"
        "    return x\n",
    )
    sh.run_cell("x = 1")
    sh.run_cell_magic("pipeline", "guarded", "check(x=x)")
    sh.run_line_magic("nbpipe", "run guarded x=7")
    view = _view(sh)
    assert view.wait(WAIT), view.error
    step = view.snapshot["steps"][0]
    assert (view.snapshot["state"], step["state"]) == ("failed", "failed")
    assert "x=7 is too big" in step["traceback"]
    sh.run_line_magic("nbpipe", f"pull {view.run.id} check")
    assert sh.user_ns["x"] == 7  # the failing step's input, to reproduce it here
    assert "Step 'check' failed" in capsys.readouterr().out
    with pytest.raises(ValueError, match="x=7 is too big"):
        sh.user_ns["check"].func(x=sh.user_ns["x"])


def test_cancel_and_attach(sh: Any, capsys: Any) -> None:
    sh.run_cell_magic(
        "component",
        "",
        "def slow(seconds: float) -> float:\n    import time\n    time.sleep(seconds)\n    return seconds\n",
    )
    sh.run_cell_magic("pipeline", "sleepy", "slow(seconds=60.0)")
    sh.run_line_magic("nbpipe", "run sleepy")
    view = _view(sh)
    deadline = time.time() + WAIT
    while view.snapshot.get("state") != "running" and time.time() < deadline:
        time.sleep(0.1)
    # The front end's Cancel button: an anywidget custom message {type: "action", action: "cancel"}.
    view._handle_custom_msg({"type": "action", "action": "cancel", "payload": {}}, [])
    assert view.wait(WAIT), view.error
    assert view.snapshot["state"] == "cancelled"
    run_id = view.run.id
    sh.magics.commands.last_run = None  # as after a kernel restart
    sh.run_line_magic("nbpipe", f"attach {run_id}")
    attached = _view(sh)
    assert attached is not view and attached.wait(10)
    assert attached.snapshot["state"] == "cancelled"
    with pytest.raises(UsageError, match=f"Run {run_id} is cancelled and has nothing to pull"):
        sh.run_line_magic("nbpipe", "pull")


def test_selected_step_logs_and_image_previews(sh: Any) -> None:
    sh.run_cell_magic(
        "component",
        "",
        "def draw(n: int):\n    import matplotlib\n    matplotlib.use('Agg')\n"
        "    import matplotlib.pyplot as plt\n    for i in range(n):\n        print('line', i)\n"
        "    fig, ax = plt.subplots(figsize=(2, 2))\n    ax.plot(range(n))\n    return fig\n",
    )
    sh.run_cell_magic("pipeline", "drawing", "draw(n=3)")
    sh.run_line_magic("nbpipe", "run drawing")
    view = _view(sh)
    assert view.wait(WAIT), view.error
    preview = view.snapshot["steps"][0]["outputs"]["output"]["preview"]
    assert preview["type"] == "image"
    assert view.images[preview["digest"]].startswith("data:image/png;base64,iVBORw0KGgo")
    view.selected = "draw"  # what the front end sets when the user clicks the step
    deadline = time.time() + 30
    while "line 2" not in view.logs.get("draw", "") and time.time() < deadline:
        time.sleep(0.05)
    assert "line 0\nline 1\nline 2" in view.logs["draw"]


def test_unknown_run_is_a_usage_error(sh: Any) -> None:
    with pytest.raises(UsageError) as info:
        sh.run_line_magic("nbpipe", "attach r-does-not-exist")
    assert "\n" not in str(info.value) and "r-does-not-exist" in str(info.value)


EXPORT_NOTEBOOK_CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef double(x: int) -> int:\n    return 2 * x",
    "@nbpipe.pipeline\ndef twice(x: int = 3):\n    double(x=double(x=x).output)",
    "heavy = open('HEAVY-CELL-RAN', 'w')  # compute: must not run during export",
]


def test_export_the_saved_notebook_and_the_kernel_pipeline(sh: Any, tmp_path: Any, capsys: Any,
                                                           monkeypatch: Any) -> None:
    import nbformat

    import nbpipe

    monkeypatch.chdir(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in EXPORT_NOTEBOOK_CELLS])
    path = tmp_path / "exp.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(UsageError, match="Cannot tell which notebook"):
        sh.run_line_magic("nbpipe", "export")
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    sh.run_line_magic("nbpipe", "export")
    pkg = nbpipe.read_package(tmp_path / "exp.nbpipe")
    assert [s["name"] for s in pkg.spec["steps"]] == ["double", "double-2"]
    assert not (tmp_path / "HEAVY-CELL-RAN").exists()
    assert "Wrote" in capsys.readouterr().out
    sh.run_line_magic("nbpipe", "export --format kfp -o twice.yaml")
    assert "pipelineInfo" in (tmp_path / "twice.yaml").read_text()
    for cell in EXPORT_NOTEBOOK_CELLS[:3]:
        sh.run_cell(cell)
    sh.run_line_magic("nbpipe", "export twice --from-kernel")
    assert nbpipe.read_package(tmp_path / "twice.nbpipe").name == "twice"


PID_STEPS = (
    "def first(n: int) -> dict:\n    import os\n"
    "    return {'n': n, 'pid': os.getpid(), 'run': os.environ['NBPIPE_RUN_ID']}\n",
    "def second(d: dict) -> dict:\n    import os\n"
    "    return {'n': d['n'] + 1, 'pid': os.getpid(), 'run': os.environ['NBPIPE_RUN_ID']}\n",
    "def third(d: dict) -> dict:\n    import os\n"
    "    return {'n': d['n'] * 10, 'pid': os.getpid(), 'run': os.environ['NBPIPE_RUN_ID']}\n",
)


def _click(view: RunView, action: str, **payload: Any) -> None:
    """What the graph's buttons send: an anywidget custom message from the front end."""
    view._handle_custom_msg({"type": "action", "action": action, "payload": payload}, [])


def test_widget_rerun_buttons_switch_the_view_to_the_new_run(sh: Any) -> None:
    for source in PID_STEPS:
        sh.run_cell_magic("component", "", source)
    sh.run_cell("n = 1")
    sh.run_cell_magic("pipeline", "chained", "third(d=second(d=first(n=n)))")
    sh.run_line_magic("nbpipe", "run chained n=2")
    view = _view(sh)
    assert view.wait(WAIT), view.error
    first_run = view.run
    pids = {s: first_run.output(s)["pid"] for s in ("first", "second", "third")}

    _click(view, "rerun_from", step="second")  # "Rerun from here" on node 'second'
    assert view.notice == {"kind": "info", "text": f"Re-running run {first_run.id} from step 'second' as "
                           f"{view.run.id}, with this kernel's pipeline 'chained'."}
    assert view.run.id != first_run.id and view.previous[-1]["id"] == first_run.id
    assert view.wait(WAIT), view.error
    snap = view.snapshot
    assert snap["id"] == view.run.id and snap["state"] == "succeeded"
    steps = {s["name"]: s for s in snap["steps"]}
    assert steps["first"]["state"] == "cached" and steps["first"]["attempt"] == 0
    assert steps["first"]["reason"].startswith(f"reused from run {first_run.id}")
    assert view.run.output("first")["pid"] == pids["first"]
    for name in ("second", "third"):  # re-executed by new processes, not taken from the cache
        assert steps[name]["state"] == "succeeded" and steps[name]["attempt"] == 1
        assert view.run.output(name)["pid"] != pids[name] and view.run.output(name)["run"] == view.run.id
    assert view.run.output("third")["n"] == 30

    from_run = view.run
    _click(view, "rerun")  # "Rerun": same parameters, a new run, shown here
    assert view.wait(WAIT), view.error
    assert view.snapshot["id"] not in (first_run.id, from_run.id) and view.snapshot["params"] == {"n": 2}
    assert [p["id"] for p in view.previous] == [first_run.id, from_run.id]

    _click(view, "open", run=first_run.id)  # the "previous run" link
    assert view.wait(WAIT) and view.snapshot["id"] == first_run.id

    _click(view, "rerun_from", step="nope")
    assert view.notice["kind"] == "error" and "has no step 'nope'" in view.notice["text"]
    assert view.snapshot["id"] == first_run.id  # an error leaves the view where it was


def test_rerun_from_failed_and_debug_with_the_kernel_definitions(sh: Any, capsys: Any) -> None:
    sh.run_cell_magic("component", "", PID_STEPS[0])
    bad = "def ratio(d: dict) -> float:\n    total = d['n'] * 3\n    return total / (d['n'] - 4)\n"
    sh.run_cell_magic("component", "", bad)
    sh.run_cell("n = 1")
    sh.run_cell_magic("pipeline", "fragile", "ratio(d=first(n=n))")
    sh.run_line_magic("nbpipe", "run fragile n=4")
    view = _view(sh)
    assert view.wait(WAIT), view.error
    failed = view.run
    assert [s["state"] for s in view.snapshot["steps"]] == ["succeeded", "failed"]

    with pytest.raises(ZeroDivisionError):
        sh.run_line_magic("nbpipe", f"debug {failed.id} ratio --no-pdb")
    out = capsys.readouterr()
    assert f"Step 'ratio' of run {failed.id} (failed: ZeroDivisionError: division by zero) → ratio(d=dict)" in out.out
    call = sh.user_ns["_nbpipe_debug"]
    assert call.inputs == {"d": failed.output("first")}

    # the fix, in the kernel only (no pipeline cell re-run needed for the name to resolve)
    sh.run_cell_magic("component", "", bad.replace("(d['n'] - 4)", "max(1, d['n'] - 4)"))
    sh.run_cell_magic("pipeline", "fragile", "ratio(d=first(n=n))")
    sh.run_line_magic("nbpipe", f"rerun {failed.id} --failed")
    assert "from step 'ratio'" in capsys.readouterr().out
    again = _view(sh)
    assert again.wait(WAIT), again.error
    steps = {s["name"]: s for s in again.snapshot["steps"]}
    assert steps["first"]["state"] == "cached" and again.run.output("first")["pid"] == failed.output("first")["pid"]
    assert steps["ratio"]["state"] == "succeeded" and again.run.output("ratio") == 12.0
    # the step that failed before runs fine in the kernel now: debug says so and returns its value
    assert sh.run_line_magic("nbpipe", f"debug {again.run.id} ratio") == 12.0

    with pytest.raises(UsageError, match="No run r-gone"):
        sh.run_line_magic("nbpipe", "debug r-gone ratio")
    with pytest.raises(UsageError, match=f"Run {failed.id} has no step 'nope'"):
        sh.run_line_magic("nbpipe", f"debug {failed.id} nope")


def test_misspelled_commands_and_options_get_did_you_mean(ip: Any) -> None:
    with pytest.raises(UsageError, match=r"%nbpipe rerun has no option --form\. Did you mean --from\? Its options: "):
        ip.run_line_magic("nbpipe", "rerun r-1 --form train")
    with pytest.raises(UsageError, match=r"%nbpipe has no command 'rerum'\. Did you mean rerun\? Its commands: run, "):
        ip.run_line_magic("nbpipe", "rerum r-1")
    with pytest.raises(UsageError, match=r"%nbpipe debug has no option --nopdb\. Did you mean --no-pdb\?"):
        ip.run_line_magic("nbpipe", "debug r-1 train --nopdb")


def test_rerun_from_here_of_plain_cells_runs_the_edited_cell(sh: Any) -> None:
    """``%nbpipe run`` of %%component cells: "Rerun from here" re-infers the pipeline from the cells as
    they are now, so an edited cell runs in its new form and the cell before it is reused."""
    sh.run_cell("n = 3")
    sh.run_cell_magic("component", "base", "import os\nxs = list(range(n))\nbase_pid = os.getpid()")
    sh.run_cell_magic("component", "grow", "ys = [x * 2 for x in xs]")
    sh.run_line_magic("nbpipe", "run")
    view = _view(sh)
    assert view.wait(WAIT), view.error
    first = view.run
    assert first.output("grow", "ys") == [0, 2, 4]
    sh.run_cell_magic("component", "grow", "ys = [x * 100 for x in xs]")  # the user edits the cell
    _click(view, "rerun_from", step="grow")
    assert view.wait(WAIT), view.error
    assert view.run.id != first.id and view.snapshot["state"] == "succeeded"
    steps = {s["name"]: s for s in view.snapshot["steps"]}
    assert steps["base"]["state"] == "cached" and view.run.output("base", "base_pid") == first.output("base", "base_pid")
    assert steps["grow"]["state"] == "succeeded" and view.run.output("grow", "ys") == [0, 100, 200]
