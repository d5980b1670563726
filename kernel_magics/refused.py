"""A function whose ``%%component`` cell was refused stays callable, but not as a pipeline step.

The cell still runs, so its ``def`` is a plain function in the notebook. Called while a pipeline is
being traced (``@nbpipe.pipeline`` in a plain cell), it used to run in the kernel as no step: the
pipeline then had "no steps", or the function computed with a parameter placeholder and failed
with an unrelated arithmetic message. :func:`refused_function` wraps it so that such a call names
the refused cell and why it was refused; any other call runs the function as before.

:func:`no_steps_note` adds the same explanation to a ``%%pipeline`` cell that got "no steps" because
it calls plain functions.

Non-goal: refusing plain calls in the notebook (the function is the user's to call).
"""

from __future__ import annotations

import functools
from typing import Any

from nbpipe.errors import DefinitionError, NbpipeError
from nbpipe.tracing import current_trace


def refused_function(func: Any, name: str, why: str) -> Any:
    """``func``, except that a call inside a pipeline being traced raises a DefinitionError naming ``why``."""
    func = getattr(func, "__nbpipe_refused__", None) and func.__wrapped__ or func

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # noqa: F841
        if current_trace() is not None:
            raise DefinitionError(f"The pipeline calls '{name}', whose %%component cell failed, so '{name}' is "
                                  f"a plain function and no step: {why}",
                                  hint="Fix that cell, run it, then the pipeline's cell.")
        return func(*args, **kwargs)

    call.__nbpipe_refused__ = why  # type: ignore[attr-defined]
    return call


def no_steps_note(exc: NbpipeError, plain: list[str]) -> str:
    """For a pipeline cell with "no steps" that calls plain functions: that those ran in the kernel as no step."""
    if not plain or "has no steps" not in exc.headline:
        return ""
    names = ", ".join(f"'{n}'" for n in plain)
    return (f" It calls {names}: plain function{'s' * (len(plain) > 1)}, not components, so the call ran in the "
            "kernel as no step; make each a component (%%component, or @nbpipe.component).")
