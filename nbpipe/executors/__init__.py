"""Executors by name: the built-ins (``local``, ``kubernetes``) and the ``nbpipe.executors`` entry points (see :mod:`nbpipe.plugins`)."""

from __future__ import annotations

from typing import Any

from ..plugins import known, lookup

__all__ = ["get", "names"]

_BUILTIN = {
    "local": "nbpipe.executors.local:LocalExecutor",
    "kubernetes": "nbpipe.executors.kubernetes:KubernetesExecutor",
}


def get(name: str) -> Any:
    """The executor class registered under ``name``."""
    return lookup("executor", _BUILTIN, name, extra="k8s" if name == "kubernetes" else "")


def names() -> list[str]:
    """Every executor name: built-ins and installed plugins."""
    return known("executor", _BUILTIN)
