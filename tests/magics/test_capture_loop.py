"""What a step runs follows the kernel as it is now, for the things a component reaches besides
plain helpers and constants, in a real IPython shell and a real runner (whose steps run in
another folder than the kernel, as a shared or remote runner does):

- a notebook class whose method reads a global constant, or an ``@functools.lru_cache`` helper: edit
  the constant or the helper → that step runs again with it (it was reused from the cache with the old
  answer);
- the user's own module next to the notebook (``import mylib as ml`` / ``from mylib import f``):
  it travels with the step (the step failed with ModuleNotFoundError), and edited and reloaded it
  runs the new code (``ml.f()`` was reused from the cache);
- a deleted helper is named in the kernel before anything is submitted, with what to do (the step
  failed later in the runner with a bare NameError).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output

BASE = """
import nbpipe
from nbpipe import component, pipeline

@component
def make() -> list:
    return [1, 4, 5, 6]
"""


def cell(ip: Any, source: str) -> None:
    result = ip.run_cell(source, store_history=True)
    assert result.success, result.error_in_exec or result.error_before_exec


def run(ip: Any, client: Any) -> tuple[Any, dict[str, str]]:
    ip.user_ns["_client"] = client
    cell(ip, "_run = _client.submit(demo)")
    done = ip.user_ns["_run"].wait(timeout=120)
    return done, {name: ("cached" if s.get("cached") else s["state"]) for name, s in done.steps.items()}


def test_a_class_method_follows_the_global_it_reads(ip: Any, nb_client: Any) -> None:
    cell(ip, BASE)
    cell(ip, "FACTOR = 2\nclass Scaler:\n    def scale(self, xs):\n        return [x * FACTOR for x in xs]")
    cell(ip, "@component\ndef scaled(xs: list) -> list:\n    return Scaler().scale(xs)")
    cell(ip, "@pipeline\ndef demo():\n    scaled(xs=make().output)")
    first, _ = run(ip, nb_client)
    assert first.output("scaled") == [2, 8, 10, 12]

    cell(ip, "FACTOR = 3")
    second, states = run(ip, nb_client)
    assert states == {"make": "cached", "scaled": "succeeded"}
    assert second.output("scaled") == [3, 12, 15, 18] == ip.run_cell("Scaler().scale([1, 4, 5, 6])").result
    _, states = run(ip, nb_client)
    assert states == {"make": "cached", "scaled": "cached"}


def test_a_cached_helper_follows_its_edits(ip: Any, nb_client: Any) -> None:
    """``@functools.lru_cache`` on a helper: plain pickle names the wrapper by reference only, so an edit
    of its body (or of a constant it reads) was a cache hit with the old answer."""
    cell(ip, BASE)
    cell(ip, "import functools\nBASE_K = 2\n@functools.lru_cache\ndef k():\n    return BASE_K")
    cell(ip, "@component\ndef times_k(xs: list) -> list:\n    return [x * k() for x in xs]")
    cell(ip, "@pipeline\ndef demo():\n    times_k(xs=make().output)")
    assert run(ip, nb_client)[0].output("times_k") == [2, 8, 10, 12]

    cell(ip, "@functools.lru_cache\ndef k():\n    return BASE_K + 1")
    done, states = run(ip, nb_client)
    assert states == {"make": "cached", "times_k": "succeeded"} and done.output("times_k") == [3, 12, 15, 18]
    cell(ip, "BASE_K = 4\nk.cache_clear()")
    done, states = run(ip, nb_client)
    assert states == {"make": "cached", "times_k": "succeeded"} and done.output("times_k") == [5, 20, 25, 30]


@pytest.fixture()
def mylib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module next to the 'notebook' (on the kernel's path only), removed from sys.modules after."""
    folder = tmp_path / "notebook"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder / "mylib_capture_loop.py"
    sys.modules.pop("mylib_capture_loop", None)


def test_the_users_own_module_travels_with_the_step_and_its_edits_run(ip: Any, nb_client: Any, mylib: Path) -> None:
    mylib.write_text("OFFSET = 1\n\ndef shift(xs):\n    return [x + OFFSET for x in xs]\n")
    cell(ip, BASE)
    cell(ip, "import importlib\nimport mylib_capture_loop as ml\nfrom mylib_capture_loop import shift")
    cell(ip, "@component\ndef via_alias(xs: list) -> list:\n    return ml.shift(xs)")
    cell(ip, "@component\ndef via_name(xs: list) -> list:\n    return shift(xs)")
    cell(ip, "@pipeline\ndef demo():\n    xs = make().output\n    via_alias(xs=xs)\n    via_name(xs=xs)")
    first, _ = run(ip, nb_client)  # the runner's steps do not have the notebook's folder on their path
    assert first.output("via_alias") == first.output("via_name") == [2, 5, 6, 7]

    mylib.write_text("OFFSET = 100\n\ndef shift(xs):\n    return [x + OFFSET for x in xs]\n")
    cell(ip, "ml = importlib.reload(ml)\nfrom mylib_capture_loop import shift")
    second, states = run(ip, nb_client)
    assert states == {"make": "cached", "via_alias": "succeeded", "via_name": "succeeded"}
    assert second.output("via_alias") == second.output("via_name") == [101, 104, 105, 106]
    _, states = run(ip, nb_client)
    assert states == {"make": "cached", "via_alias": "cached", "via_name": "cached"}


def rendered_error(ip: Any, source: str) -> str:
    with capture_output() as out:
        result = ip.run_cell(source, store_history=True)
    assert not result.success
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)


def test_a_deleted_helper_is_named_before_anything_is_submitted(ip: Any, nb_client: Any) -> None:
    cell(ip, BASE)
    cell(ip, "def clean(xs):\n    return [x for x in xs if x != 5]")
    cell(ip, "def tidy(xs):\n    return sorted(clean(xs))")
    cell(ip, "@component\ndef cleaned(xs: list) -> list:\n    return clean(xs)")
    cell(ip, "@component\ndef tidied(xs: list) -> list:\n    return tidy(xs)")
    cell(ip, "@pipeline\ndef demo():\n    xs = make().output\n    cleaned(xs=xs)\n    tidied(xs=xs)")
    run(ip, nb_client)
    before = len(nb_client.runs(limit=500))

    cell(ip, "del clean")
    ip.user_ns["_client"] = nb_client
    text = rendered_error(ip, "_run = _client.submit(demo)")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines[-1] == (
        "DefinitionError: Component 'cleaned' uses 'clean', which this kernel does not define now. Was it deleted "
        "or renamed, or is its cell not run since the kernel started? Run the cell that defines 'clean', or change "
        "'cleaned' not to use it; then run the pipeline again."), text
    assert len(lines) == 3 and "_client.submit(demo)" in lines[1], text  # the user's line, no nbpipe frames
    assert len(nb_client.runs(limit=500)) == before  # nothing was submitted

    cell(ip, "@component\ndef cleaned(xs: list) -> list:\n    return xs")  # the first user no longer needs it
    text = rendered_error(ip, "_run = _client.submit(demo)")
    assert "Component 'tidied' uses 'clean' (in 'tidy'), which this kernel does not define now" in text, text
    assert "or change 'tidy' not to use it" in text, text

    cell(ip, "def clean(xs):\n    return [x for x in xs if x != 4]")
    done, states = run(ip, nb_client)
    assert done.output("tidied") == [1, 5, 6] and states["make"] == "cached"


def test_a_package_over_the_limit_names_the_captured_value(ip: Any, nb_client: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner said only 'The package is 271.6 MB, over the 268 MB limit' for a 288 MB array a
    component read as a global (the limit is lowered here to keep the test small)."""
    import nbpipe.package

    monkeypatch.setattr(nbpipe.package, "MAX_PACKAGE_BYTES", 3_000_000)
    cell(ip, BASE)
    cell(ip, "import os\nblob = os.urandom(4_000_000)\nsmall = list(range(10))")
    cell(ip, "@component\ndef first_byte(xs: list) -> int:\n    return blob[0] + len(small) + len(xs)")
    cell(ip, "@pipeline\ndef demo():\n    first_byte(xs=make().output)")
    before = len(nb_client.runs(limit=500))
    ip.user_ns["_client"] = nb_client
    text = rendered_error(ip, "_run = _client.submit(demo)")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert re.fullmatch(
        r"DefinitionError: Pipeline 'demo' packages to 4\.\d MB, over the 3 MB limit\. Component 'first_byte' "
        r"captures 'blob' \(bytes, 4\.0 MB\) from the notebook, and a step's code carries what it captures\. Save a "
        r"large value to a file and pass its path as an input \(or make it in a step and pass the Output\[Dataset\]\), "
        r"or load it inside the component\.", lines[-1]), text
    assert len(lines) == 3 and "nbpipe/" not in text, text
    assert len(nb_client.runs(limit=500)) == before


def test_pipeline_parameters_hit_and_miss_the_cache_exactly(ip: Any, nb_client: Any) -> None:
    """A changed default, a passed value, the same value written as an int: only what changed re-runs."""
    ip.user_ns["_client"] = nb_client
    cell(ip, BASE.replace("def make() -> list:\n    return [1, 4, 5, 6]",
                          "def make(n: int) -> list:\n    return list(range(n))"))
    cell(ip, "@component\ndef weigh(xs: list, c: float) -> float:\n    return sum(xs) * c")
    pipe = "@pipeline\ndef demo(n: int = 3, c: float = {c}):\n    weigh(xs=make(n=n).output, c=c)"

    def states(source: str) -> tuple[float, dict[str, str]]:
        cell(ip, f"_run = {source}")
        done = ip.user_ns["_run"].wait(timeout=120)
        return done.output("weigh"), {n: ("cached" if s.get("cached") else s["state"]) for n, s in done.steps.items()}

    cell(ip, pipe.format(c="1.0"))
    assert states("_client.submit(demo)")[0] == 3.0
    cell(ip, pipe.format(c="2.0"))  # a new default
    assert states("_client.submit(demo)") == (6.0, {"make": "cached", "weigh": "succeeded"})
    assert states("_client.submit(demo, {'c': 2})") == (6.0, {"make": "cached", "weigh": "cached"})
    assert states("_client.submit(demo, {'c': 1.0})") == (3.0, {"make": "cached", "weigh": "cached"})
    assert states("_client.submit(demo, {'n': 4})") == (12.0, {"make": "succeeded", "weigh": "succeeded"})


def test_a_module_holding_a_lock_still_makes_a_component(ip: Any, mylib: Path) -> None:
    """A module of the user's that cannot travel whole (a lock made at import) is imported by name in the
    step, as before modules travelled by value: defining the component must not start failing."""
    mylib.write_text("import threading\nLOCK = threading.Lock()\n\ndef shift(xs):\n    with LOCK:\n"
                     "        return [x + 1 for x in xs]\n")
    cell(ip, BASE)
    cell(ip, "import mylib_capture_loop as ml")
    cell(ip, "@component\ndef via_alias(xs: list) -> list:\n    return ml.shift(xs)")
    assert b"mylib_capture_loop" in ip.user_ns["via_alias"].payload


def test_a_package_over_the_limit_names_a_value_inside_the_users_module(ip: Any, mylib: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's module travels whole, so a large value it loads at import is what makes a package large."""
    import nbpipe.package

    monkeypatch.setattr(nbpipe.package, "MAX_PACKAGE_BYTES", 3_000_000)
    mylib.write_text("import os\nimport mylib_capture_loop as again\nDATA = os.urandom(4_000_000)\n\n"
                     "def pick(i):\n    return DATA[i]\n")
    cell(ip, BASE)
    cell(ip, "import mylib_capture_loop as ml")
    cell(ip, "@component\ndef picked(xs: list) -> int:\n    return ml.pick(xs[0])")
    cell(ip, "@pipeline\ndef demo():\n    picked(xs=make().output)")
    text = rendered_error(ip, "nbpipe.build_package(demo)")
    assert "Component 'picked' captures 'ml.DATA' (bytes, 4.0 MB) from the notebook" in text, text
