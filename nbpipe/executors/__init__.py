"""Executors: a name → class registry (``local``, ``kubernetes``) plus ``nbpipe.executors`` entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

__all__ = ["get"]

_BUILTIN = {
    "local": "nbpipe.executors.local:LocalExecutor",
    "kubernetes": "nbpipe.executors.kubernetes:KubernetesExecutor",
}


def get(name: str) -> Any:
    """The executor class registered under ``name``."""
    target = _BUILTIN.get(name)
    if target is None:
        for ep in entry_points(group="nbpipe.executors"):
            if ep.name == name:
                return ep.load()
        raise ValueError(f"Unknown executor {name!r}; known: {', '.join(_BUILTIN)}")
    mod, _, cls = target.partition(":")
    try:
        module = importlib.import_module(mod)
    except ImportError as exc:
        from ..errors import NbpipeError

        raise NbpipeError(f"Executor '{name}' cannot load ({exc})",
                          hint='Install its extra, e.g. pip install "nbpipe[k8s]".') from None
    return getattr(module, cls)
