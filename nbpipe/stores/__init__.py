"""Stores: a name → class registry (``local``, ``s3``) plus the ``nbpipe.stores`` entry points."""

from __future__ import annotations

from typing import Any

from .._registry import lookup
from .base import ObjectInfo, Store, content_key

__all__ = ["ObjectInfo", "Store", "content_key", "get", "open_store"]

_BUILTIN = {"local": "nbpipe.stores.local:LocalStore", "s3": "nbpipe.stores.s3:S3Store"}


def get(name: str) -> Any:
    """The store class registered under ``name``."""
    return lookup("store", "nbpipe.stores", _BUILTIN, name)


def open_store(config: dict[str, Any]) -> Store:
    """Build a store from :meth:`Store.config` JSON."""
    cfg = dict(config)
    cls = get(cfg.pop("type"))
    return cls(**cfg)  # type: ignore[no-any-return]
