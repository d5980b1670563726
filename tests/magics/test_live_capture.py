"""The pipeline follows the kernel: what runs is what the kernel has at submit time.

A real IPython shell (the InteractiveShell a kernel runs) and a real runner with real step
processes. The loops a user runs: edit a global → run again → that step misses and gives the
new answer while the untouched upstream step is reused; edit a helper; re-run a ``%%component``
cell with a fixed body → the new body runs; a failing step's traceback shows the cell and line,
helpers from other cells too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from nbpipe.errors import DefinitionError, StepFailed

CELLS = [
    "import nbpipe\nfrom nbpipe import component, pipeline",
    "THRESH = 3",
    "def clean(xs):\n    return [x for x in xs if x is not None]",
    "@component\ndef make() -> list:\n    return [1, 4, 5, 6, None]",
    "@component\ndef count_big(xs: list) -> int:\n    return sum(1 for x in clean(xs) if x > THRESH)",
    "@pipeline\ndef demo():\n    count_big(xs=make().output)",
]


def cell(ip: Any, source: str) -> None:
    result = ip.run_cell(source, store_history=True)
    assert result.success, result.error_in_exec or result.error_before_exec


def run(ip: Any, client: Any) -> Any:
    ip.user_ns["_client"] = client
    cell(ip, "_run = _client.submit(demo)")
    return ip.user_ns["_run"].wait(timeout=120)


def attempts(r: Any) -> dict[str, str]:
    return {name: ("cached" if s.get("cached") else s["state"]) for name, s in r.steps.items()}


def test_an_edited_global_or_helper_reruns_that_step_only(ip: Any, nb_client: Any) -> None:
    for source in CELLS:
        cell(ip, source)
    first = run(ip, nb_client)
    assert first.output("count_big") == 3
    assert ip.run_cell("count_big([1, 4, 5, 6, None])").result == 3

    cell(ip, "THRESH = 5")
    second = run(ip, nb_client)
    assert second.output("count_big") == 1 == ip.run_cell("count_big([1, 4, 5, 6, None])").result
    assert attempts(second) == {"make": "cached", "count_big": "succeeded"}

    cell(ip, "def clean(xs):\n    return [x for x in xs if x is not None and x != 6]")
    third = run(ip, nb_client)
    assert third.output("count_big") == 0
    assert attempts(third) == {"make": "cached", "count_big": "succeeded"}

    again = run(ip, nb_client)  # nothing changed: everything is reused
    assert attempts(again) == {"make": "cached", "count_big": "cached"}


def test_a_rerun_component_cell_runs_its_new_body(ip: Any, nb_client: Any) -> None:
    for source in CELLS:
        cell(ip, source)
    cell(ip, "%load_ext nbpipe")
    ip.run_cell_magic("component", "count_big", "def count_big(xs: list) -> int:\n    return len(xs) // 0\n")
    with pytest.raises(StepFailed) as info:
        run(ip, nb_client)
    text = str(info.value)
    assert re.search(r'File "Cell In\[\d+\]", line 2, in count_big\n    return len\(xs\) // 0', text), text
    assert "<dynamic-code>" not in text

    ip.run_cell_magic("component", "count_big", "def count_big(xs: list) -> int:\n    return len(xs) * 10\n")
    fixed = run(ip, nb_client)  # the pipeline cell was not re-run: it follows the new definition
    assert fixed.output("count_big") == 50
    assert attempts(fixed) == {"make": "cached", "count_big": "succeeded"}


def test_a_helper_from_another_cell_shows_its_own_cell_and_line(ip: Any, nb_client: Any) -> None:
    for source in CELLS:
        cell(ip, source)
    cell(ip, "def clean(xs):\n    kept = [x for x in xs if x is not None]\n    return kept[len(kept)]")
    with pytest.raises(StepFailed) as info:
        run(ip, nb_client)
    text = str(info.value)
    assert re.search(r'File "Cell In\[\d+\]", line 3, in count_big\n    return sum\(1 for x in clean\(xs\)', text), text
    assert re.search(r'File "Cell In\[\d+\]", line 3, in clean\n    return kept\[len\(kept\)\]', text), text
    assert "IndexError: list index out of range" in text


def test_a_redefined_component_that_no_longer_fits_says_which_cell_to_rerun(ip: Any) -> None:
    for source in CELLS:
        cell(ip, source)
    cell(ip, "@component\ndef count_big(values: list) -> int:\n    return len(values)")
    with pytest.raises(DefinitionError) as info:
        ip.run_cell("import nbpipe; nbpipe.build_package(demo)").raise_error()
    msg = str(info.value)
    assert msg.startswith("Component 'count_big' was redefined and pipeline 'demo' no longer fits it: "
                          "Step 'count_big': component 'count_big' has no input 'xs'")
    assert re.search(r"re-run the cell that defines pipeline 'demo' \(Cell In\[\d+\]\)", msg), msg


def test_a_plain_component_cell_shows_its_own_cell_lines(ip: Any, nb_client: Any) -> None:
    cell(ip, "import os\ndef helper(v):\n    return v[0]")
    ip.run_cell_magic("component", "load", "data = list(range(3))")
    number = ip.execution_count  # the number the next cell gets, as the user sees it
    cell(ip, '%%component use\ntotal = sum(data)\nfirst = helper([] if os.environ.get("NBPIPE_RUN_ID") else data)\n')
    with pytest.raises(StepFailed) as info:
        nb_client.submit(ip.magics.notebook_pipeline()).wait(timeout=120)
    text = str(info.value)
    assert (f'File "Cell In[{number}]", line 2, in use\n'
            '    first = helper([] if os.environ.get("NBPIPE_RUN_ID") else data)') in text, text
    assert re.search(r'File "Cell In\[\d+\]", line 3, in helper\n    return v\[0\]', text), text


@pytest.mark.parametrize("redefinition, why", [
    ("def count_big(xs: list) -> int:\n    return 0", "function 'count_big' was redefined after the component was made"),
    ("@component(name='other')\ndef count_big(xs: list) -> int:\n    return 0",
     "the notebook's 'count_big' is now component 'other'"),
])
def test_an_ambiguous_redefinition_is_an_error_not_a_stale_run(ip: Any, redefinition: str, why: str) -> None:
    for source in CELLS:
        cell(ip, source)
    cell(ip, "import nbpipe\n_ok = nbpipe.build_package(demo)")
    cell(ip, redefinition)
    with pytest.raises(DefinitionError) as info:
        ip.run_cell("nbpipe.build_package(demo)").raise_error()
    msg = str(info.value)
    assert msg.startswith(f"Pipeline 'demo' uses component 'count_big', but {why}"), msg
    assert re.search(r"Re-run the cell that makes component 'count_big', then the cell that defines pipeline "
                     r"'demo' \(Cell In\[\d+\]\)\.$", msg), msg


def test_a_component_made_from_a_function_by_name_is_not_ambiguous(ip: Any) -> None:
    cell(ip, "import nbpipe\ndef double(x: int) -> int:\n    return 2 * x\ndouble_op = nbpipe.component(double)")
    cell(ip, "@nbpipe.pipeline\ndef twice(x: int = 1):\n    double_op(x=double_op(x=x).output)")
    cell(ip, "_pkg = nbpipe.build_package(twice)")


def test_run_rerun_in_a_kernel_takes_the_fixed_cell_unless_same_code(ip: Any, nb_client: Any) -> None:
    """``run.rerun(from_failed=True)`` typed in the notebook after fixing the cell runs the fix (the
    kernel's pipeline of that name now), like the graph's button; ``same_code=True`` the old package."""
    for source in CELLS[:5]:
        cell(ip, source)
    cell(ip, "@component\ndef count_big(xs: list) -> int:\n    return len(clean(xs)) // (len(xs) - 5)")
    cell(ip, CELLS[5])
    ip.user_ns["_client"] = nb_client
    cell(ip, "_first = _client.submit(demo)")
    first = ip.user_ns["_first"].wait(timeout=120, raise_on_failure=False)
    assert attempts(first)["count_big"] == "failed"  # ('make' may be cached from another test's run)

    cell(ip, "@component\ndef count_big(xs: list) -> int:\n    return len(clean(xs)) // max(1, len(xs) - 5)")
    cell(ip, "_same = _first.rerun(from_failed=True, same_code=True)")
    same = ip.user_ns["_same"].wait(timeout=120, raise_on_failure=False)
    assert attempts(same) == {"make": "cached", "count_big": "failed"}  # the run's own package: the old bug
    cell(ip, "_fixed = _first.rerun(from_failed=True)")
    fixed = ip.user_ns["_fixed"].wait(timeout=120)
    assert fixed.output("count_big") == 4
    assert fixed.steps["make"]["reason"] == f"reused from run {first.id} (upstream of 'count_big', unchanged)"
    assert fixed.steps["count_big"]["attempt"] == 1 and fixed.snapshot()["package"] != first.snapshot()["package"]
