"""``%%component`` and ``%%pipeline`` through a real IPython shell (``run_cell_magic``), plus every
UsageError the magics raise, table-driven. No runner is needed here.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError

from nbpipe.component import Component
from nbpipe.pipeline import Pipeline


def test_function_cell_runs_and_becomes_component(ip: Any) -> None:
    ip.run_cell("import math")
    ip.run_cell_magic(
        "component",
        "--retries 2 --cpu 500m --memory 1Gi --timeout 30 --no-cache --packages a,b",
        "SCALE = 2\n\ndef area(r: float) -> float:\n    return SCALE * math.pi * r * r\n",
    )
    comp = ip.user_ns["area"]
    assert isinstance(comp, Component) and comp.name == "area"
    assert ip.user_ns["SCALE"] == 2  # the cell also ran
    assert comp(1.0) == pytest.approx(2 * 3.141592653589793)  # still usable in the notebook
    o = comp.options
    assert (o.retries, o.resources.cpu, o.resources.memory, o.timeout, o.cache, o.packages) == (
        2,
        "500m",
        "1Gi",
        30.0,
        False,
        ("a", "b"),
    )
    assert "def area" in comp.source and [i.name for i in comp.inputs] == ["r"]


def test_pipeline_in_the_component_cell_traces_the_component(ip: Any) -> None:
    """QA: a %%component cell with the def and a @pipeline calling it ran the plain function in the
    kernel while tracing (a sleep blocked the kernel); the component now exists before the rest runs."""
    ip.run_cell("from nbpipe import pipeline")
    ip.run_cell_magic(
        "component",
        "",
        "def nap(s: int) -> int:\n    raise RuntimeError('ran in the kernel')\n\n"
        "@pipeline\ndef napper():\n    nap(s=1)\n",
    )
    comp = ip.user_ns["nap"]
    assert isinstance(comp, Component)
    assert [s.component for s in ip.user_ns["napper"].trace.steps.values()] == [comp]
    assert "__nbpipe_component__" not in ip.user_ns and not ip.ast_transformers
    with pytest.raises(UsageError, match=r"Component 'bad' takes \*a"):  # refused before the trace runs
        ip.run_cell_magic("component", "", "def bad(*a):\n    return 1\n\n@pipeline\ndef p():\n    bad(1)\n")
    assert "p" not in ip.user_ns
    ip.run_cell_magic("component", "snooze", "def nap(s: int) -> int:\n    raise RuntimeError('in the kernel')\n\n"
                      "@pipeline\ndef napper():\n    nap(s=1)\n")  # renamed: the pipeline calls it by its def
    assert [s.component for s in ip.user_ns["napper"].trace.steps.values()] == [ip.user_ns["snooze"]]


def test_distributed_options_from_the_cell_line(ip: Any) -> None:
    ip.run_cell_magic("component", "--workers 2 --kubeflow-job", "def train(x: int) -> int:\n    return x\n")
    o = ip.user_ns["train"].options
    assert (o.workers, o.kubeflow_job) == (2, True)
    ip.run_cell_magic("component", "--workers 3", "def train(x: int) -> int:\n    return x\n")
    o = ip.user_ns["train"].options
    assert (o.workers, o.kubeflow_job) == (3, False)


def test_function_cell_with_name_picks_that_function(ip: Any) -> None:
    ip.run_cell_magic(
        "component", "second", "def first():\n    return 1\n\ndef second() -> int:\n    return 2\n"
    )
    assert ip.user_ns["second"].name == "second" and not isinstance(ip.user_ns["first"], Component)


def test_function_cell_name_renames_single_function(ip: Any) -> None:
    ip.run_cell_magic("component", "double_it", "def f(x: int) -> int:\n    return 2 * x\n")
    assert ip.user_ns["double_it"].name == "double_it" and ip.user_ns["double_it"](4) == 8


def test_plain_cell_component(ip: Any) -> None:
    ip.run_cell("import statistics\nxs = [1, 2, 3, 6]\nlabel = 'mean'\n_private = 5")
    ip.run_cell_magic(
        "component", "summarize", "m = statistics.mean(xs)\n_tmp = m * 2\ntext = f'{label}={m}'\n"
    )
    comp = ip.user_ns["summarize"]
    assert ip.user_ns["text"] == "mean=3" and ip.user_ns["_tmp"] == 6  # ran in the kernel
    assert [i.name for i in comp.inputs] == ["xs", "label"]
    # typed Any, as the saved notebook's export types them: the same cell is the same component there
    assert [(o.name, o.type) for o in comp.outputs] == [("m", "any"), ("text", "any")]
    assert tuple(comp.func([2, 4], "avg")) == (3, "avg=3")  # a real function of its inputs
    assert comp.source.startswith("m = statistics.mean(xs)")
    entry = ip.magics.cells[-1]
    assert (entry.inputs, entry.outputs) == (("xs", "label"), ("m", "text"))


def test_plain_cell_overrides_and_in_out_same_name(ip: Any) -> None:
    ip.run_cell("data = [3, 1, 2]\nlimit = 2")
    ip.run_cell_magic(
        "component", "clean --inputs data --outputs data", "data = sorted(data)[:limit]\nn = len(data)"
    )
    comp = ip.user_ns["clean"]
    assert [i.name for i in comp.inputs] == ["data_in"] and [o.name for o in comp.outputs] == ["data"]
    assert tuple(comp.func(data_in=[9, 8, 7])) == ([7, 8],)  # limit is captured from the notebook


def test_plain_cell_rerun_keeps_its_place(ip: Any) -> None:
    ip.run_cell("a = 1")
    ip.run_cell_magic("component", "one", "b = a + 1")
    ip.run_cell_magic("component", "two", "c = b + 1")
    ip.run_cell_magic("component", "one", "b = a + 10")
    assert [c.component.name for c in ip.magics.cells] == ["one", "two"]
    assert ip.user_ns["b"] == 11


def test_plain_cells_infer_the_pipeline(ip: Any) -> None:
    ip.run_cell("n = 3")
    ip.run_cell_magic("component", "make", "xs = list(range(n))")
    ip.run_cell_magic("component", "total", "s = sum(xs)")
    pipe = ip.magics.notebook_pipeline()
    assert pipe.parameters == [{"name": "n", "type": "int", "default": 3}]
    assert pipe.steps["total"].inputs == {"xs": {"step": "make", "output": "xs"}}


def test_pipeline_cell(ip: Any) -> None:
    ip.run_cell_magic("component", "", "def add(a: int, b: int) -> int:\n    return a + b\n")
    ip.run_cell("offset = 5\nwidth = 2.5")
    ip.run_cell_magic("pipeline", "adder", "s = add(a=offset, b=1)\nadd(a=s.output, b=offset)")
    pipe = ip.user_ns["adder"]
    assert isinstance(pipe, Pipeline) and pipe.name == "adder"
    assert pipe.parameters == [{"name": "offset", "type": "int", "default": 5}]
    assert list(pipe.steps) == ["add", "add-2"]
    assert pipe.steps["add-2"].inputs["a"] == {"step": "add", "output": "output"}
    assert "s" not in ip.user_ns  # the pipeline cell does not run in the kernel


# magic, line, cell, setup cell, the message (a regex)
ERRORS = [
    ("component", "", "import os\nLIMIT = 3\n", "", r"no function and only imports or sets constants"),
    (
        "component",
        "",
        "def a():\n    pass\ndef b():\n    pass\n",
        "",
        r"defines 2 functions \(a, b\); say which.*%%component b",
    ),
    ("component", "c", "def a():\n    pass\ndef b():\n    pass\n", "", r"none is named 'c'"),
    (
        "component",
        "",
        "y = undefined_thing + 1",
        "",
        r"reads 'undefined_thing', which no earlier cell defines",
    ),
    (
        "component",
        "",
        "import threading\nlock = threading.Lock()",
        "",
        r"Output 'lock' .*\(lock\) cannot be pickled.*_lock",
    ),
    ("component", "make-x", "x = 1", "", r"must be a Python identifier; try %%component make_x"),
    ("component", "--retries x", "x = 1", "",
     r"^%%component: argument --retries: invalid int value: 'x'\. %%component\? lists its options\.$"),
    ("component", "--packages", "x = 1", "", r"^%%component: argument --packages: expected one argument\. "),
    ("component", "1st", "x = 1", "", r"must be a Python identifier; try %%component component_1st\.$"),
    ("component", "class", "x = 1", "", r"must be a Python identifier; try %%component component_class\.$"),
    ("component", "x", "x = len('a')", "", r"Component name 'x' is also a variable of the cell"),
    ("component", "--retries -1", "def f():\n    return 1\n", "", r"retries=-1 must be a whole number"),
    ("component", "--cpu lots", "x = 1", "", r"cpu='lots' is not a CPU quantity"),
    ("component", "--timeout soon", "x = 1", "", r"timeout 'soon' is not a duration"),
    ("component", "--outputs zz", "x = len('a')", "", r"--outputs lists 'zz', which the cell never assigns"),
    ("component", "--inputs q", "x = len('a')", "q = 2", r"--inputs lists 'q', which the cell never reads"),
    ("component", "--inputs a", "def f(a):\n    return a\n", "", r"--inputs/--outputs are for plain cells"),
    ("component", "", "x = (1", "", r"syntax error \(line 2"),  # the editor's line: %%component is line 1
    ("component", "", "y = 1\ndef g(x: int) -> int\n    return x", "", r"syntax error \(line 3: expected ':'"),
    ("component", "", "%time y = 1\nz = 2", "", r"magics or !commands"),
    ("component", "", "await asyncio.sleep(0)\nz = 1", "import asyncio", r"top-level await"),
    ("component", "", "raise ValueError('boom')\nz = 1", "", r"The cell failed \(see the error above\)"),
    ("component", "", "def f(*a):\n    return 1\n", "", r"Component 'f' takes \*a"),
    ("component", "--bogus", "x = 1", "", r"%%component has no option --bogus\. Its options: --cpu"),
    ("component", "--retires 2", "x = 1", "", r"%%component has no option --retires\. Did you mean --retries\?"),
    ("component", "--no_cache", "x = 1", "", r"no option --no_cache\. Did you mean --no-cache\?"),
    ("component", "--kubeflow-job", "def f():\n    return 1\n", "", r"kubeflow_job=True needs workers=N with N >= 2"),
    ("pipeline", "--nmae p", "x = 1", "", r"%%pipeline has no option --nmae\."),
    (
        "pipeline",
        "",
        "train(X)",
        "import numpy\nX = numpy.zeros(2)\ntrain = print",
        r"reads 'X' \(ndarray\).*plain JSON values",
    ),
    ("pipeline", "", "nothing_here()", "", r"reads 'nothing_here', which no earlier cell defines"),
    ("pipeline", "p", "x = 1", "", r"Pipeline 'p' has no steps"),
    ("pipeline", "my-pipe", "x = 1", "", r"Pipeline name 'my-pipe' .* identifier"),
    ("nbpipe", "run", None, "", r"Nothing to run"),
    ("nbpipe", "run notdefined", None, "", r"'notdefined' is not defined"),
    ("nbpipe", "run xs", None, "xs = [1]", r"'xs' is a list, not a pipeline"),
    ("nbpipe", "run a b", None, "", r"Give one pipeline and param=value pairs"),
    ("nbpipe", "pull", None, "", r"No run yet in this kernel"),
    ("nbpipe", "cancel", None, "", r"No run yet in this kernel"),
    ("nbpipe", "config foo=1", None, "", r"Unknown setting 'foo=1'"),
    ("nbpipe", "frobnicate", None, "", r"%nbpipe has no command 'frobnicate'\. Its commands: run, "),
    ("nbpipe", "rnu demo", None, "", r"%nbpipe has no command 'rnu'\. Did you mean run\?"),
    ("nbpipe", "logs", None, "", r"No run yet in this kernel"),
    ("nbpipe", "logs r2026-typo", None, "", r"^'r2026-typo' is not a run id or a variable holding a run, and this "
                                             r"kernel has no run whose step it could be"),
    ("nbpipe", "debug train", None, "", r"^'train' is not a run id or a variable holding a run"),
    ("nbpipe", "logs r20261202-004413-cedf1a train extra", None, "", r"Give a run id and a step name; got "),
    ("nbpipe", "attach", None, "", r"No run yet in this kernel"),
    ("nbpipe", "rerun --from", None, "", r"^argument --from: expected one argument\. Usage: %nbpipe rerun "
                                         r"\[--from STEP\] \[--failed\] \[--same-code\] \[run\] \(%nbpipe rerun --help says more\)\.$"),
    ("nbpipe", "runs --limit x", None, "", r"^argument --limit: invalid int value: 'x'\. Usage: %nbpipe runs "),
    ("nbpipe", "", None, "", r"%nbpipe needs a command: run, .*debug.* \(e\.g\. %nbpipe run PIPELINE\)"),
    ("nbpipe", "debug", None, "", r"No run yet in this kernel"),
]


@pytest.mark.parametrize("magic,line,cell,setup,message", ERRORS, ids=[e[4][:40] for e in ERRORS])
def test_usage_errors(ip: Any, magic: str, line: str, cell: str | None, setup: str, message: str) -> None:
    if setup:
        assert ip.run_cell(setup).success
    with pytest.raises(UsageError, match=message) as info:
        if cell is None:
            ip.run_line_magic(magic, line)
        else:
            ip.run_cell_magic(magic, line, cell)
    assert "\n" not in str(info.value), "a UsageError is one line"


def test_plain_input_from_unmarked_cell_must_be_json(ip: Any) -> None:
    ip.run_cell("import numpy\narr = numpy.arange(3)")
    ip.run_cell_magic("component", "total", "s = float(arr.sum())")
    with pytest.raises(
        UsageError, match=r"reads 'arr', which no earlier %%component cell outputs.*%%component"
    ):
        ip.run_line_magic("nbpipe", "run")


def test_two_pipelines_need_a_name(ip: Any) -> None:
    ip.run_cell_magic("component", "", "def one() -> int:\n    return 1\n")
    ip.run_cell_magic("pipeline", "p1", "one()")
    ip.run_cell_magic("pipeline", "p2", "one()")
    with pytest.raises(UsageError, match=r"2 pipelines \(p1, p2\); name one: %nbpipe run p1"):
        ip.run_line_magic("nbpipe", "run")


def test_runner_down_is_one_line(ip: Any) -> None:
    ip.run_line_magic("nbpipe", "config runner=http://127.0.0.1:9")
    with pytest.raises(UsageError, match=r"^No runner at http://127.0.0.1:9 .*Start one.*%nbpipe config runner=local") as info:
        ip.run_line_magic("nbpipe", "runs")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("line, first", [
    ("--help", "%nbpipe COMMAND [ARGS] — %nbpipe COMMAND --help for its arguments."),
    ("-h", "%nbpipe COMMAND [ARGS] — %nbpipe COMMAND --help for its arguments."),
    ("rerun --help", "%nbpipe rerun [--from STEP] [--failed] [--same-code] [run]"),
    ("logs -h", "%nbpipe logs [--attempt ATTEMPT] [[RUN] [STEP] ...]"),
])
def test_help_is_there_where_the_usage_errors_point(ip: Any, line: str, first: str, capsys: Any) -> None:
    """'%nbpipe --help says what each does' and '(%nbpipe rerun --help says more)': both said 'the following
    arguments are required: command' or 'has no option --help'."""
    ip.run_line_magic("nbpipe", line)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == first, out
    assert "%%" not in out and "::" not in out, out
    assert ("Print a step's logs." if line.startswith("-") else "(default: the last run") in out, out
