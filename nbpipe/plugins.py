"""Plug points by name: stores (``nbpipe.stores``) and executors (``nbpipe.executors``) as entry points.

A distribution registers a class under an entry-point group, e.g. in its ``pyproject.toml``::

    [project.entry-points."nbpipe.stores"]
    gcs = "nbpipe_gcs:GcsStore"

and ``NBPIPE_STORE=gcs`` (or ``nbpipe runner start --store gcs``) selects it. The built-ins
(``local``/``s3`` stores, ``local``/``kubernetes`` executors) are a literal table that takes
precedence, so an installed package cannot replace them by registering the same name; nothing
registers itself on import. Errors name the plugin, its group and the distribution that declared
it. The contracts are in :mod:`nbpipe.stores.base` and :mod:`nbpipe.executors.base`; see
``docs/plugins.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import NbpipeError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

GROUPS = {"store": "nbpipe.stores", "executor": "nbpipe.executors"}


def _dist(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"the distribution '{dist.metadata['Name']}' {dist.version}"


def _entry_points(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points  # here: a step process imports this module but never looks up

    seen: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        seen.setdefault(ep.name, ep)  # the first on sys.path wins, as for imports
    return list(seen.values())


def known(kind: str, builtin: dict[str, str]) -> list[str]:
    """Every name ``kind`` may be chosen by: the built-ins and the installed entry points."""
    return sorted(set(builtin) | {ep.name for ep in _entry_points(GROUPS[kind])})


def lookup(kind: str, builtin: dict[str, str], name: str, extra: str = "") -> Any:
    """The class registered as ``name``: a built-in ``module:Class`` target, else an entry point.

    Raises
    ------
    NbpipeError
        ``name`` is unknown (listing the known names), or its plugin fails to load (naming the
        entry point, the distribution that declares it and the error).
    """
    group = GROUPS[kind]
    target = builtin.get(name)
    if target is not None:
        mod, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except ImportError as exc:
            raise NbpipeError(f"The {kind} '{name}' cannot load ({exc})",
                              hint=f'Install what it needs: pip install "nbpipe[{extra or name}]".') from None
    ep = next((e for e in _entry_points(group) if e.name == name), None)
    if ep is None:
        raise NbpipeError(f"Unknown {kind} {name!r}", f"Known {kind}s: {', '.join(known(kind, builtin))}.",
                          f"Pick one of those, or install the distribution that registers '{name}' under the "
                          f"'{group}' entry points (see docs/plugins.md).")
    try:
        cls = ep.load()
    except Exception as exc:  # noqa: BLE001 - any failure in third-party code: say whose it is
        raise NbpipeError(f"The {kind} plugin '{name}' ({ep.value}, from {_dist(ep)}) failed to load: "
                          f"{type(exc).__name__}: {exc}",
                          hint=f"Fix or reinstall that distribution, or choose another {kind} "
                               f"({', '.join(sorted(builtin))} are built in).") from None
    if not isinstance(cls, type):
        raise NbpipeError(f"The {kind} plugin '{name}' ({ep.value}, from {_dist(ep)}) is a "
                          f"{type(cls).__name__}, not a class",
                          hint=f"Its '{group}' entry point must name a class (module:Class).")
    return cls
