"""Executors: a name → class registry (``local``, ``kubernetes``) plus ``nbpipe.executors`` entry points."""

from __future__ import annotations

from typing import Any

from .._registry import lookup

__all__ = ["get"]

_BUILTIN = {
    "local": "nbpipe.executors.local:LocalExecutor",
    "kubernetes": "nbpipe.executors.kubernetes:KubernetesExecutor",
}


def get(name: str) -> Any:
    """The executor class registered under ``name``."""
    return lookup("executor", "nbpipe.executors", _BUILTIN, name, extra="k8s" if name == "kubernetes" else "")
