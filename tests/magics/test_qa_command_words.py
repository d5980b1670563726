"""QA: ``%nbpipe`` arguments as a user types them.

- ``%nbpipe run p --name "my run"`` named the run ``"my run"`` with its quotes (``--notebook "my
  nb.ipynb"`` looked for a file with quotes in its name), as IPython's split keeps quotes.
- ``%nbpipe run p --name n x=1`` said "unrecognized arguments: x=1": parameters had to come before
  the options.
- ``x='a b'`` was split at the space. ``x='3'`` still passes the string '3'.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError

from kernel_magics.suggest import parse_command


def _args(ip: Any, line: str) -> dict[str, Any]:
    return vars(parse_command(ip.magics.commands.parser, line))


def test_quotes_group_words_and_are_dropped(ip: Any) -> None:
    assert _args(ip, 'run p --name "my run"')["name"] == "my run"
    assert _args(ip, "export --notebook 'my nb.ipynb'")["notebook"] == "my nb.ipynb"
    assert _args(ip, "run p --experiment='exp one'")["experiment"] == "exp one"
    assert _args(ip, "logs 'r1' step")["target"] == ["r1", "step"]


def test_parameters_may_follow_the_options_and_keep_their_quotes(ip: Any) -> None:
    assert _args(ip, "run p --name n x=1 y='a b' z='3'")["args"] == ["p", "x=1", "y='a b'", "z='3'"]
    assert _args(ip, "debug --no-pdb r1 step")["target"] == ["r1", "step"]
    with pytest.raises(UsageError, match="unrecognized arguments: r2"):
        _args(ip, "rerun r1 r2")
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        _args(ip, "run p --name n --bogus")


@pytest.mark.timeout(300)
def test_a_run_named_in_quotes_with_a_parameter_after_the_options(ip: Any, nb_runner: Any) -> None:
    ip.run_line_magic("nbpipe", f"config runner={nb_runner.url}")
    assert ip.run_cell("import nbpipe\n@nbpipe.component\ndef qa_echo(s: str) -> str:\n    return s\n"
                       "@nbpipe.pipeline\ndef qa_words(s: str = 'x'):\n    qa_echo(s=s)").success
    ip.run_line_magic("nbpipe", "run qa_words --name 'my run' s='a b'")
    run = ip.magics.commands.last_run.wait(timeout=240)
    assert run.snapshot()["name"] == "my run"
    assert run.output("qa_echo") == "a b"
