"""Versions of the packages a component imports, as the kernel has them, checked by the step.

At submit time :func:`imported_versions` lists the installed distributions a component's code
uses — ``import`` statements in the function and the notebook helpers captured with it, and the
modules of the globals it reads (``np``, ``RandomForestClassifier``, a ``DataFrame``) — each pinned
to the kernel's version (``scikit-learn==1.7.2``). The package records them as the component's
``imports`` (see ``docs/package-format.md``). Before the step runs, :func:`check` compares them with
the step's environment: a different version (or none) is an error naming both versions, or a
warning, or nothing, by ``NBPIPE_PACKAGE_SKEW`` = ``error`` (default) / ``warn`` / ``off`` — in the
runner's environment (it reaches local steps and step pods) or a component's ``env=`` (per component).

Skipped: the standard library, nbpipe itself (the entrypoint's own version is the image's), code
pickled by value (``__main__``, scripts that are not installed), distributions the component
declares in ``packages=`` (the step installs exactly those), and top-level names that several
distributions share (namespace packages such as ``google``: which one is meant cannot be told).

Non-goals: dependencies of what is imported (a pinned ``packages=`` list or a lock file covers
those), and modules imported only by ``importlib.import_module``/``__import__`` with a computed name.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
import sys
import types
from typing import Any, Iterable

POLICY_ENV = "NBPIPE_PACKAGE_SKEW"
POLICIES = ("error", "warn", "off")
_SKIP = frozenset({"__main__", "builtins", "nbpipe", "__future__"})


class VersionMismatch(Exception):
    """The step's environment has other versions of what the component imports than the kernel had."""


def _modules_in_code(code: types.CodeType) -> set[str]:
    """Dotted module names of the absolute ``import`` statements in ``code`` and its nested code."""
    import dis

    out: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        ins = list(dis.get_instructions(c))
        for i, op in enumerate(ins):
            if op.opname != "IMPORT_NAME" or not op.argval:
                continue
            level = ins[i - 2].argval if i >= 2 and ins[i - 2].opname == "LOAD_CONST" else 0
            if not level:  # (LOAD_CONST level, LOAD_CONST fromlist, IMPORT_NAME): level 0 is absolute
                out.add(str(op.argval))
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return out


def _module_of(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return value.__name__
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        return getattr(value, "__module__", "") or ""
    return getattr(type(value), "__module__", "") or ""


def imported_modules(func: Any) -> set[str]:
    """Top-level names of the modules ``func`` (and the helpers captured with it) imports or reads."""
    from .capture import helpers, references

    names: set[str] = set()
    for f in helpers(func):
        code = getattr(f, "__code__", None)
        if code is not None:
            names |= _modules_in_code(code)
        for value in references(f).values():
            if type(value).__name__ == "Component":
                continue
            names.add(_module_of(value))
    tops = {n.split(".")[0] for n in names if n}
    return {t for t in tops if t not in _SKIP and t not in sys.stdlib_module_names and not t.startswith("_")}


@functools.lru_cache(maxsize=1024)
def _distribution_of(top: str) -> str | None:
    """The one installed distribution providing top-level module ``top``, or ``None``."""
    import importlib.metadata

    mod = sys.modules.get(top)
    if mod is not None and not getattr(mod, "__file__", None) and not getattr(mod, "__path__", None):
        return None  # built into the interpreter
    try:  # most distributions are named as their module (numpy, pandas, torch): no scan of them all
        dist = importlib.metadata.distribution(top)
        top_level = (dist.read_text("top_level.txt") or "").split()
        if not top_level or top in top_level:
            return str(dist.metadata["Name"])
    except importlib.metadata.PackageNotFoundError:
        pass
    found = _scan_for(top, mod)
    return found[0] if len(found) == 1 else None


def _scan_for(top: str, mod: Any) -> list[str]:
    """Distributions providing ``top``, from the ``.dist-info`` folders beside it (``top_level.txt``, else
    ``RECORD``): what ``importlib.metadata.packages_distributions`` finds, without reading every RECORD."""
    import importlib.metadata

    where = getattr(mod, "__file__", None) or ""
    if getattr(mod, "__path__", None):
        where = os.path.dirname(where) if where else next(iter(mod.__path__), "")
    folders = [os.path.dirname(where)] if where else [p for p in sys.path if os.path.isdir(p or ".")]
    names: list[str] = []
    for folder in folders:
        metas = [os.path.join(folder, e) for e in sorted(os.listdir(folder or "."))
                 if e.endswith((".dist-info", ".egg-info"))]
        unknown = []
        for meta in metas:
            dist = importlib.metadata.PathDistribution(pathlib.Path(meta))
            top_level = (dist.read_text("top_level.txt") or "").split()
            if top in top_level:
                names.append(str(dist.metadata["Name"]))
            elif not top_level:
                unknown.append(dist)
        for dist in unknown if not names else ():
            record = dist.read_text("RECORD") or dist.read_text("SOURCES.txt") or ""
            if re.search(rf"^{re.escape(top)}(/|\.py,|\.[^/,]*\.so,|-[^/]*\.pth,)", record, re.M):
                names.append(str(dist.metadata["Name"]))
        if names:
            break
    return list(dict.fromkeys(names))


def imported_versions(func: Any, declared: Iterable[str] = ()) -> list[str]:
    """``["name==version", ...]`` of the installed distributions ``func`` uses, minus ``declared`` ones."""
    skip = {normalize(_requirement_name(d)) for d in declared}
    out: dict[str, str] = {}
    for top in sorted(imported_modules(func)):
        name = _distribution_of(top)
        if name is None or normalize(name) in skip or normalize(name) == "nbpipe":
            continue
        version = _version_of(name)
        if version is not None:
            out[name] = version
    return [f"{n}=={v}" for n, v in sorted(out.items(), key=lambda kv: normalize(kv[0]))]


@functools.lru_cache(maxsize=1024)
def _version_of(name: str) -> str | None:
    """The installed version of distribution ``name`` (~1 ms a lookup, so once per kernel: a module the
    kernel imported stays at the version it imported until the kernel restarts)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


_SPEC_CACHE: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def spec_fields(component: Any, capture: Any) -> dict[str, Any]:
    """``{"imports": [...]}`` for a component's package entry (``{}`` when it imports nothing installed).

    Cached per payload: the payload names every module the function reads by reference, so the
    same bytes import the same modules.
    """
    key = (capture.payload_digest, tuple(component.options.packages))
    if key not in _SPEC_CACHE:
        try:
            _SPEC_CACHE[key] = imported_versions(component.func, component.options.packages)
        except Exception:  # noqa: BLE001 - a best-effort record must never stop a submit
            _SPEC_CACHE[key] = []
    return {"imports": list(_SPEC_CACHE[key])} if _SPEC_CACHE[key] else {}


def normalize(name: str) -> str:
    """PEP 503 name: ``Scikit_Learn`` -> ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(text: str) -> str:
    return re.split(r"[\s\[<>=!~;@(]", text.strip(), maxsplit=1)[0]


def policy(env: dict[str, str] | None = None) -> str:
    """The version check's policy from ``NBPIPE_PACKAGE_SKEW`` (``error`` when unset)."""
    value = (os.environ if env is None else env).get(POLICY_ENV, "error").strip().lower() or "error"
    if value not in POLICIES:
        raise VersionMismatch(f"{POLICY_ENV}={value!r} is not one of {', '.join(POLICIES)}: set it to error (fail the "
                              "step when a package's version differs from the kernel's), warn, or off.")
    return value


def check(component: str, imports: list[str], declared: Iterable[str] = (), env: dict[str, str] | None = None,
          ) -> list[str]:
    """Compare the kernel's versions ``imports`` with this environment's; the differences, one line each.

    Raises :class:`VersionMismatch` with those lines under the ``error`` policy; returns them
    (for the step's log) under ``warn``; returns ``[]`` under ``off``.
    """
    how = policy(env)
    if how == "off" or not imports:
        return []
    import importlib.metadata

    skip = {normalize(_requirement_name(d)) for d in declared}
    lines = []
    for item in imports:
        name, _, want = item.partition("==")
        if not want or normalize(name) in skip:
            continue
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = ""
        if have == want:
            continue
        where = f"this step has {name} {have}" if have else f"{name} is not installed in this step's environment"
        lines.append(f"Component '{component}' was defined in a kernel with {name}=={want}, but {where}. "
                     f"Use an image (or environment) with {name}=={want}, or declare it: "
                     f"@component(packages=['{name}=={want}']); {POLICY_ENV}=warn only warns.")
    if lines and how == "error":
        raise VersionMismatch("\n".join(lines))
    return lines
