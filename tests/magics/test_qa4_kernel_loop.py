"""QA pass 4 on the notebook loop, in a real IPython shell with the real embedded runner and step processes.

Found: a function whose ``%%component`` cell was refused (it captures a lock, a socket, an open file)
stays a plain function, and ``@nbpipe.pipeline`` calling it ran it in the kernel as no step: "Pipeline
'p' has no steps", or an arithmetic error about a parameter placeholder. ``nbpipe.run(p, name="alice")``
for a pipeline with a parameter ``name`` named the run "alice" and ran with the default (``%nbpipe run p
name=alice`` was a TypeError), and ``nbpipe.run(p, 5)`` a bare TypeError. ``%nbpipe logs`` of a
cancelled or cached step said "has written no logs yet", and ``run.output`` of a cancelled step
"is cancelled, so it has no outputs. the run was cancelled. See nbpipe logs" (a log it does not have).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from nbpipe.errors import DefinitionError, NbpipeError


def shown(ip: Any, cell: str) -> tuple[Any, str]:
    """Run ``cell``; its error and what the user sees of it (IPython's rendering, colours removed)."""
    with capture_output() as out:
        result = ip.run_cell(cell, store_history=True)
    return result.error_in_exec, re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)


def test_a_pipeline_calling_a_refused_component_names_the_refused_cell(ip: Any) -> None:
    ip.run_cell("import threading, nbpipe\nLOCK = threading.Lock()")
    with pytest.raises(UsageError, match=r"uses 'LOCK', a lock"):
        ip.run_cell_magic("component", "uselock", "def uselock(n: int) -> int:\n    with LOCK:\n        return n\n")
    err, text = shown(ip, "@nbpipe.pipeline\ndef pl(n: int = 1):\n    uselock(n=n)\n")
    assert isinstance(err, DefinitionError)  # it was "Pipeline 'pl' has no steps"
    assert "The pipeline calls 'uselock', whose %%component cell failed, so 'uselock' is a plain function and " \
           "no step: Component 'uselock' uses 'LOCK', a lock" in text, text
    assert "Fix that cell, run it, then the pipeline's cell." in text
    assert ", line 3, in pl" in text and "uselock(n=n)" in text  # the user's own line
    assert "kernel_magics" not in text and "nbpipe/" not in text and len(text.splitlines()) <= 4, text
    assert ip.run_cell("uselock(3)").result == 3  # called in the notebook, it is the user's function as before

    ip.run_cell_magic("component", "uselock", "def uselock(n: int) -> int:\n    return n\n")  # fixed
    err, text = shown(ip, "@nbpipe.pipeline\ndef pl(n: int = 1):\n    uselock(n=n)\n")
    assert err is None and list(ip.user_ns["pl"].steps) == ["uselock"], text


def test_a_pipeline_cell_with_no_steps_names_the_plain_functions_it_calls(ip: Any) -> None:
    ip.run_cell("def helper(x: int) -> int:\n    return x\n")
    with pytest.raises(UsageError, match=r"^Pipeline 'pp' has no steps\. .* It calls 'helper': plain function, "
                                         r"not components, so the call ran in the kernel as no step"):
        ip.run_cell_magic("pipeline", "pp", "def pp(n: int = 1):\n    helper(x=n)\n")


GREET = """
import nbpipe

@nbpipe.component
def hello(name: str) -> str:
    return "hi " + name

@nbpipe.pipeline
def greet(name: str = "world"):
    hello(name=name)
"""


@pytest.mark.timeout(300)
def test_a_parameter_named_like_a_run_option_is_not_lost(ip: Any) -> None:
    assert ip.run_cell(GREET).success
    err, text = shown(ip, 'nbpipe.run(greet, name="alice")')
    assert isinstance(err, DefinitionError), text
    assert "'name' is both a parameter of pipeline 'greet' and nbpipe.run's own name=" in text
    assert "nbpipe.run(greet, params={'name': ...})" in text and len(text.splitlines()) <= 3, text
    err, text = shown(ip, "nbpipe.run(greet, 'alice')")
    assert isinstance(err, DefinitionError)
    assert "nbpipe.run takes pipeline 'greet's parameters by name, not by position" in text
    assert "Write nbpipe.run(greet, params={'name': 'alice'})." in text

    run = ip.run_cell('nbpipe.run(greet, params={"name": "bob"}, name="run b", wait=True)').result
    assert run.output("hello") == "hi bob" and run.snapshot()["name"] == "run b"
    ip.run_line_magic("nbpipe", "run greet name=carol --name 'run c'")  # it was a TypeError
    run = ip.magics.commands.last_run
    assert run.wait(timeout=120).output("hello") == "hi carol" and run.snapshot()["name"] == "run c"


SLOW = """
import nbpipe

@nbpipe.component
def first(n: int) -> int:
    return n

@nbpipe.component(cache=False)
def wait_long(x: int) -> int:
    import time
    time.sleep(120)
    return x

@nbpipe.pipeline
def slow(n: int = 1):
    wait_long(x=first(n=n).output)
"""


@pytest.mark.timeout(300)
def test_logs_and_outputs_of_a_cancelled_or_cached_step_say_why_there_are_none(ip: Any) -> None:
    assert ip.run_cell(SLOW).success
    ip.run_cell("warm = nbpipe.run(slow)")
    run = ip.user_ns["warm"]
    deadline = time.monotonic() + 120
    while {s["name"]: s["state"] for s in run.snapshot()["steps"]}.get("wait_long") != "running":
        assert time.monotonic() < deadline, run.snapshot()
        time.sleep(0.1)
    ip.run_line_magic("nbpipe", "cancel warm")
    assert run.wait(timeout=60, raise_on_failure=False).state == "cancelled"
    with capture_output() as out:
        ip.run_line_magic("nbpipe", "logs warm wait_long")
    assert out.stdout.strip() == f"(step 'wait_long' of run {run.id} wrote nothing to its log before it was cancelled)"
    with pytest.raises(NbpipeError) as ei:
        run.output("wait_long")
    assert str(ei.value) == (f"Step 'wait_long' of run {run.id} was cancelled, so it has no outputs (the run was "
                             f"cancelled). Run it again: nbpipe rerun {run.id}.")

    ip.run_cell("again = nbpipe.run(slow)")  # 'first' comes from the cache; the run is cancelled at once
    again = ip.user_ns["again"]
    ip.run_line_magic("nbpipe", "cancel again")
    again.wait(timeout=60, raise_on_failure=False)
    with capture_output() as out:
        ip.run_line_magic("nbpipe", "logs again first")
    assert re.fullmatch(rf"\(step 'first' of run {again.id} was reused from the cache \(.*\): it has no log of its "
                        r"own in this run\)", out.stdout.strip()), out.stdout


LISTS = """
import nbpipe

@nbpipe.component
def show(tags: list, cfg: dict) -> str:
    return f"{tags} {cfg}"

@nbpipe.pipeline
def lists(tags: list = [], cfg: dict = {}):
    show(tags=tags, cfg=cfg)
"""


@pytest.mark.timeout(300)
def test_run_takes_list_and_dict_values_written_as_in_python(ip: Any) -> None:
    assert ip.run_cell(LISTS).success
    # split at its spaces, "[1, 2]" was "Give one pipeline and param=value pairs; got lists 2]"
    ip.run_line_magic("nbpipe", """run lists tags=[1, 2] cfg={"a": "x]", "b": [3, 4]}""")
    run = ip.magics.commands.last_run
    assert run.wait(timeout=120).output("show") == "[1, 2] {'a': 'x]', 'b': [3, 4]}"


def test_config_shows_the_runner_and_takes_embedded(ip: Any, capsys: Any) -> None:
    import nbpipe.client

    ip.run_line_magic("nbpipe", "config runner=http://127.0.0.1:9 token=t")
    capsys.readouterr()
    ip.run_line_magic("nbpipe", "config")  # it was "the following arguments are required: settings"
    assert capsys.readouterr().out.strip() == ("nbpipe runner: http://127.0.0.1:9 with a token. Change it with "
                                               "%nbpipe config runner=URL token=TOKEN (runner=local: the embedded one).")
    ip.run_line_magic("nbpipe", "config runner=embedded")  # it was "Did you mean runner=http://embedded?"
    assert nbpipe.client._configured()[0] is None  # noqa: SLF001
    ip.run_line_magic("nbpipe", "config")
    assert "nbpipe runner: the embedded local runner (started on first use)." in capsys.readouterr().out
