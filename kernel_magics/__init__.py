"""IPython magics for nbpipe: ``%%component``, ``%%pipeline`` and ``%nbpipe``.

Users load them with ``%load_ext nbpipe`` (which calls :func:`load_ipython_extension`).
The modules inside use only relative imports and the public ``nbpipe`` SDK, so the package
can also ship inside the wheel as ``nbpipe._kernel_magics``.

Non-goals: logic of their own; cell analysis and the building of components and pipelines
live in :mod:`kernel_magics.cells` and :mod:`kernel_magics.cell_component` as pure functions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register :class:`~kernel_magics.magics.NbpipeMagics` on ``ipython``."""
    from .interrupts import register
    from .magics import NbpipeMagics

    ipython.register_magics(NbpipeMagics(ipython))
    register(ipython)  # an interrupt while waiting on a run says the run goes on


def unload_ipython_extension(ipython: Any) -> None:
    """Stop the magics' cell-event listener (the magics stay registered, as IPython allows)."""
    magics = ipython.magics_manager.registry.get("NbpipeMagics")
    if magics is not None:
        magics.unregister()
    if tuple(getattr(ipython, "custom_exceptions", ())) == (KeyboardInterrupt,):  # ours (see interrupts.register)
        ipython.set_custom_exc((), None)
