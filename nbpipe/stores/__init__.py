"""Stores by name: the built-ins (``local``, ``s3``) and the ``nbpipe.stores`` entry points (see :mod:`nbpipe.plugins`)."""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import NbpipeError
from ..plugins import known, lookup
from .base import ObjectInfo, Store, content_key
from .scoped import scoped

__all__ = ["ObjectInfo", "Store", "check", "content_key", "get", "names", "open_store", "scoped"]

_BUILTIN = {"local": "nbpipe.stores.local:LocalStore", "s3": "nbpipe.stores.s3:S3Store"}


def get(name: str) -> Any:
    """The store class registered under ``name``."""
    return lookup("store", _BUILTIN, name)


def names() -> list[str]:
    """Every store name: built-ins and installed plugins."""
    return known("store", _BUILTIN)


def open_store(config: dict[str, Any]) -> Store:
    """Build a store from :meth:`Store.config` JSON: ``{"type": NAME, **constructor arguments}``."""
    cfg = dict(config)
    if not isinstance(cfg.get("type"), str):
        raise NbpipeError(f"A store config needs a 'type' (the store's name), got {config!r}",
                          hint=f"Known stores: {', '.join(names())}.")
    name = cfg.pop("type")
    if name == "prefixed":  # a view of another store (see .scoped), not a store of its own
        from .scoped import PrefixedStore

        return PrefixedStore(cfg.get("store") or {}, str(cfg.get("prefix") or ""))
    return check(name, cfg)(**cfg)  # type: ignore[no-any-return]


def check(name: str, options: dict[str, Any]) -> Any:
    """The class of store ``name``, after checking that it takes ``options`` (its constructor's arguments)."""
    cls = get(name)
    params = inspect.signature(cls).parameters
    unknown = [k for k in options if k not in params]
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise NbpipeError(f"The store '{name}' has no option {', '.join(map(repr, unknown))}",
                          hint=f"Its options: {', '.join(params) or 'none'}.")
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise NbpipeError(f"The store '{name}' cannot be opened with these options: {exc}",
                          hint=f"Its options: {', '.join(params) or 'none'}.") from None
    return cls
