"""Name → class lookup for the plug points (executors, stores), papermill-style.

A literal table of built-ins plus an entry-point group; nothing registers itself on import.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .errors import NbpipeError


def lookup(kind: str, group: str, builtin: dict[str, str], name: str, extra: str = "") -> Any:
    """The class registered as ``name``: a built-in ``module:Class`` target or an entry point."""
    target = builtin.get(name)
    if target is None:
        for ep in entry_points(group=group):
            if ep.name == name:
                return ep.load()
        known = sorted(set(builtin) | {ep.name for ep in entry_points(group=group)})
        raise NbpipeError(f"Unknown {kind} {name!r}", f"Known: {', '.join(known)}.")
    mod, _, cls = target.partition(":")
    try:
        module = importlib.import_module(mod)
    except ImportError as exc:
        raise NbpipeError(f"The {kind} '{name}' cannot load ({exc})",
                          hint=f'Install what it needs: pip install "nbpipe[{extra or name}]".') from None
    return getattr(module, cls)
