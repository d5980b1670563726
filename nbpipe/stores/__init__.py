"""Stores: a name → class registry (``local``, ``s3``) plus the ``nbpipe.stores`` entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .base import ObjectInfo, Store, content_key

__all__ = ["ObjectInfo", "Store", "content_key", "get", "open_store"]

_BUILTIN = {"local": "nbpipe.stores.local:LocalStore", "s3": "nbpipe.stores.s3:S3Store"}


def get(name: str) -> Any:
    """The store class registered under ``name``."""
    target = _BUILTIN.get(name)
    if target is None:
        for ep in entry_points(group="nbpipe.stores"):
            if ep.name == name:
                return ep.load()
        raise ValueError(f"Unknown store type {name!r}; known: {', '.join(_BUILTIN)}")
    mod, _, cls = target.partition(":")
    return getattr(importlib.import_module(mod), cls)


def open_store(config: dict[str, Any]) -> Store:
    """Build a store from :meth:`Store.config` JSON."""
    cfg = dict(config)
    cls = get(cfg.pop("type"))
    return cls(**cfg)  # type: ignore[no-any-return]
