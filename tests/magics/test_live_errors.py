"""Errors in the kernel are one screen: the user's line and the message, no nbpipe frames.

On a real IPython shell (the same InteractiveShell a kernel runs), as a user meets them:
a definition mistake in a pipeline cell, arithmetic on a pipeline parameter, a misspelled
magic option, a ``%%component`` cell that also holds a pipeline.
"""

from __future__ import annotations

import re
from typing import Any

from IPython.utils.capture import capture_output

from nbpipe.component import Component

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def rendered(ip: Any, cell: str) -> str:
    with capture_output() as out:
        result = ip.run_cell(cell, store_history=True)
    assert not result.success
    return ANSI.sub("", out.stdout + out.stderr)


SETUP = """
import nbpipe
from nbpipe import component, pipeline

@component
def make_numbers(n: int) -> list:
    return list(range(n))
"""


def test_a_definition_error_is_the_users_line_and_the_message(ip: Any) -> None:
    assert ip.run_cell(SETUP, store_history=True).success
    text = rendered(ip, '@pipeline\ndef demo():\n    make_numbers(n="ten")\n')
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert re.match(r"Cell In\[\d+\], line 3, in demo$", lines[0]), text
    assert lines[1].strip() == 'make_numbers(n="ten")'
    assert lines[2].startswith("DefinitionError: Step 'make_numbers' input 'n' expects int, got 'ten'.")
    assert len(lines) == 3, text
    assert "nbpipe/" not in text and "site-packages" not in text and "Traceback" not in text


def test_arithmetic_on_a_parameter_says_what_a_parameter_is(ip: Any) -> None:
    assert ip.run_cell(SETUP + "\n@component\ndef wait(seconds: float) -> float:\n    return seconds\n").success
    text = rendered(ip, "@pipeline\ndef slow(seconds: float = 1.0):\n    wait(seconds=seconds + 1)\n")
    assert "wait(seconds=seconds + 1)" in text
    assert ("Pipeline parameter 'seconds' has no value while the pipeline is being defined, so `seconds + 1` "
            "cannot be computed here") in text
    assert "Do the arithmetic inside a component" in text
    assert "nbpipe/" not in text and "TypeError" not in text


def test_a_method_on_a_parameter_or_a_typo_on_a_step_is_one_screen(ip: Any) -> None:
    assert ip.run_cell(SETUP).success
    text = rendered(ip, "@pipeline\ndef shout(word: str = 'a'):\n    make_numbers(n=len(word.upper()))\n")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert re.match(r"Cell In\[\d+\], line 3, in shout$", lines[0]) and len(lines) == 3, text
    assert lines[2].startswith("DefinitionError: Pipeline parameter 'word' has no value while the pipeline is being "
                               "defined, so `word.upper` cannot be computed here."), text
    text = rendered(ip, "@pipeline\ndef typo():\n    make_numbers(n=make_numbers(n=1).ouput)\n")
    assert text.strip().splitlines()[-1] == "DefinitionError: Step 'make_numbers' has no attribute 'ouput'. " \
                                            "Did you mean .output?", text
    assert "nbpipe/" not in text and "AttributeError" not in text


def test_a_python_error_in_a_pipeline_body_shows_the_users_frames_only(ip: Any) -> None:
    assert ip.run_cell(SETUP).success
    text = rendered(ip, "@pipeline\ndef demo():\n    make_numbers(n=undefined_count)\n")
    assert "NameError: name 'undefined_count' is not defined" in text
    assert "----> 3     make_numbers(n=undefined_count)" in text
    assert "nbpipe/" not in text and "site-packages" not in text, text


def test_a_component_cell_that_also_defines_a_pipeline_takes_the_component(ip: Any) -> None:
    ip.run_cell_magic("component", "", SETUP + "\n@pipeline\ndef numbers_pipeline(n: int = 3):\n"
                                              "    make_numbers(n=n)\n")
    comp = ip.user_ns["make_numbers"]
    assert isinstance(comp, Component) and comp.name == "make_numbers"
    assert ip.user_ns["numbers_pipeline"].name == "numbers-pipeline"


def test_a_misspelled_magic_option_is_named_with_the_right_one(ip: Any) -> None:
    text = rendered(ip, "%%component --retires 2\nx = 1\n")
    assert "%%component has no option --retires. Did you mean --retries?" in text
    assert len([ln for ln in text.splitlines() if ln.strip()]) == 1, text


def test_a_plain_component_cell_reading_an_open_file_is_refused_before_it_runs(ip: Any, tmp_path: Any) -> None:
    path = tmp_path / "precious.txt"
    assert ip.run_cell(f"fh = open({str(path)!r}, 'w')\nfh.write('precious')\nfh.flush()").success
    text = rendered(ip, "%%component writer\nn = fh.write('x')\n")
    assert text.strip().startswith(f"UsageError: Cell component 'writer' reads 'fh', an open file (TextIOWrapper "
                                   f"'{path}' mode 'w'), from the notebook."), text
    assert "Create it inside the cell, or pass a path (or other plain value) as an input instead of 'fh'." in text
    assert len([ln for ln in text.splitlines() if ln.strip()]) == 1, text
    assert "writer" not in ip.user_ns and "n" not in ip.user_ns  # the cell did not run

    # made while 'fh' was a path, run after it became an open file: refused at run, not truncated
    assert ip.run_cell(f"fh.close()\nfh = {str(path)!r}").success
    ip.run_cell_magic("component", "writer", "n = sum([1, 2])\n")  # the refused cell, fixed
    ip.run_cell_magic("component", "reader", "size = len(open(fh).read())\n")
    assert ip.run_cell(f"fh = open({str(path)!r}, 'a')").success
    text = rendered(ip, "%nbpipe run")
    assert text.strip().startswith("UsageError: Cell component 'reader' reads 'fh', an open file"), text
    ip.run_cell("fh.close()")
    assert path.read_text() == "precious"


def test_an_error_raised_under_a_compiled_extension_shows_the_users_line(ip: Any) -> None:
    """An interrupt lands where the kernel happens to be: in a wait under ``%nbpipe pull`` that was zmq's
    Cython code, whose frames name a file that is nowhere (``zmq/backend/cython/_zmq.py``). The screen
    showed that frame as the user's line; it is the cell's line."""
    assert ip.run_cell(
        "from nbpipe.errors import NbpipeError\n"
        "exec(compile('def check_rc():\\n    raise NbpipeError(\"stopped waiting\")\\n', "
        "'zmq/backend/cython/_zmq.py', 'exec'))").success
    text = rendered(ip, "x = 1\ncheck_rc()\n")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert re.match(r"Cell In\[\d+\], line 2$", lines[0]) and lines[1].strip() == "check_rc()", text
    assert lines[2] == "NbpipeError: stopped waiting." and len(lines) == 3, text


def test_a_refused_def_in_a_cell_with_its_pipeline_says_why_once(ip: Any) -> None:
    assert ip.run_cell("import threading\nfrom nbpipe import pipeline\nLOCK = threading.Lock()").success
    handlers = (ip.custom_exceptions, ip.CustomTB)
    text = rendered(ip, "%%component\ndef guarded(n: int) -> int:\n    with LOCK:\n        return n\n\n"
                        "@pipeline\ndef locked():\n    guarded(n=1)\n")
    assert text.count("Component 'guarded' uses 'LOCK', a lock") == 1, text
    assert text.strip().startswith("UsageError: ") and len(text.strip().splitlines()) == 1, text
    assert "locked" not in ip.user_ns  # stopped before the @pipeline traced the plain function
    assert (ip.custom_exceptions, ip.CustomTB) == handlers
