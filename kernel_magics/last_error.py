"""The run behind the kernel's last error: ``nbpipe.run(p).wait()`` raised StepFailed and kept no ``Run``.

``%nbpipe debug``/``logs``/``pull``/``rerun`` default to "the last run of this kernel", which they
found only in a variable, a shown graph or a ``%nbpipe run``. The most common way to start and wait,
``nbpipe.run(p).wait()`` (or ``wait=True``), leaves none of those when the step fails, so the next
command said "No run yet in this kernel". The failed ``wait()`` is still on the last traceback
(IPython keeps it as ``sys.last_traceback``), with its ``Run`` as ``self``.
"""

from __future__ import annotations

import sys
from typing import Any


def run_of_last_error() -> Any:
    """The ``Run`` whose ``wait()`` raised the kernel's last exception, if that is what happened."""
    from nbpipe.client import Run
    from nbpipe.errors import StepFailed

    if not isinstance(getattr(sys, "last_value", None), StepFailed):
        return None
    tb, found = getattr(sys, "last_traceback", None), None
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, Run):
            found = candidate
        tb = tb.tb_next
    return found
