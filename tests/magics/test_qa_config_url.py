"""QA: ``%nbpipe config runner=localhost:8765`` — the URL without its ``http://``.

It was accepted ("nbpipe runner: localhost:8765"), and every later command failed with a screen of
httpx frames ("Request URL has an unsupported protocol 'localhost://'"). It is refused at once, naming
the URL meant; the runner configured before stays.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError

import nbpipe.client


@pytest.mark.parametrize("given, meant", [
    ("localhost:8765", "http://localhost:8765"),
    ("127.0.0.1:8765", "http://127.0.0.1:8765"),
    ("ftp://host:1", "http://host:1"),
])
def test_a_runner_url_without_its_scheme_is_refused_with_the_url_meant(ip: Any, given: str, meant: str) -> None:
    ip.run_line_magic("nbpipe", "config runner=http://127.0.0.1:9")
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("nbpipe", f"config runner={given}")
    assert str(err.value) == (f"runner={given} is not a runner URL: it starts with http:// or https://. "
                              f"Did you mean %nbpipe config runner={meant}?")
    assert nbpipe.client._configured()[0] == "http://127.0.0.1:9"  # noqa: SLF001 - the earlier choice stays


def test_urls_and_local_are_still_taken(ip: Any, capsys: Any) -> None:
    ip.run_line_magic("nbpipe", "config runner=https://runner.example:443")
    assert "nbpipe runner: https://runner.example:443" in capsys.readouterr().out
    ip.run_line_magic("nbpipe", "config runner=local")
    assert "the embedded local runner" in capsys.readouterr().out
