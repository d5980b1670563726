"""A real IPython shell with the nbpipe magics loaded fresh for each test.

The root conftest already points NBPIPE_HOME at a session temp dir, so any embedded runner a
test starts is isolated and stopped at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.getipython import get_ipython
from IPython.testing.globalipapp import start_ipython

from kernel_magics.magics import NbpipeMagics


@pytest.fixture()
def ip() -> Iterator[Any]:
    """The global test shell, namespace reset, with a new NbpipeMagics (no plain cells remembered)."""
    shell = start_ipython() or get_ipython()  # start_ipython returns None once started
    shell.reset(new_session=False)
    from nbpipe.widgets.run_view import _SHOWN

    _SHOWN.clear()  # graphs an earlier test showed: a fresh kernel has shown none (%nbpipe pull finds runs there)
    shell.run_line_magic("load_ext", "nbpipe")  # the user's entry point: registers once per shell
    magics = NbpipeMagics(shell)
    shell.register_magics(magics)
    shell.magics = magics  # handy for tests: the object behind %%component / %nbpipe
    yield shell
    magics.unregister()
    import nbpipe.client

    nbpipe.client.configure()
