"""Checks on what a component captures, in the kernel, before anything is uploaded.

- :func:`check_defined`: a name the component (or a notebook helper it calls) reads that the kernel no
  longer defines — a deleted or renamed helper — is refused naming it, instead of a NameError later in
  the step.
- :func:`too_large`: a package over the size limit names the component and the notebook values that
  make it large (a 300 MB array read as a global), and what to do instead.

Non-goal: pickling (:mod:`nbpipe.capture`) or the limit itself (:mod:`nbpipe.package`).
"""

from __future__ import annotations

import builtins
import dis
import functools
import types
from typing import Any

import cloudpickle

from .capture import _by_value, helpers, local_module, references
from .errors import DefinitionError


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple[frozenset[str], frozenset[str]]:
    """The global names ``code`` (nested code included) reads, and those it assigns or deletes."""
    loads: set[str] = set()
    stores: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        for ins in dis.get_instructions(c):
            if ins.opname == "LOAD_GLOBAL":
                loads.add(ins.argval)
            elif ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
                stores.add(ins.argval)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return frozenset(loads), frozenset(stores)


def undefined_globals(func: Any) -> list[tuple[str, str]]:
    """(name, function) for each global that ``func`` or a notebook helper it reaches reads but the
    notebook does not define now (a helper deleted or renamed, a cell not run in this kernel)."""
    funcs = [f for f in helpers(func) if isinstance(f, types.FunctionType) and _by_value(f)]
    assigned: set[str] = set()
    for f in funcs:
        assigned |= _global_names(f.__code__)[1]
    out: list[tuple[str, str]] = []
    for f in funcs:
        b = f.__globals__.get("__builtins__", builtins)
        names = b if isinstance(b, dict) else vars(b)
        out += [(n, f.__qualname__) for n in sorted(_global_names(f.__code__)[0])
                if n not in f.__globals__ and n not in names and n not in assigned]
    return out


def check_defined(func: Any, name: str) -> None:
    """Refuse, before anything is uploaded, component ``name`` whose code reads a name the notebook
    no longer has (a deleted or renamed helper): its step would only fail with a NameError."""
    __tracebackhide__ = True  # noqa: F841
    missing = undefined_globals(func)
    if not missing:
        return
    var, where = missing[0]
    inner = where.rsplit(".", 1)[-1]
    via = "" if inner == getattr(func, "__name__", "") else f" (in '{where}')"
    others = sorted({n for n, _ in missing} - {var})
    raise DefinitionError(
        f"Component '{name}' uses '{var}'{via}, which this kernel does not define now"
        + (f" (nor {', '.join(repr(n) for n in others)})" if others else ""),
        "Was it deleted or renamed, or is its cell not run since the kernel started?",
        f"Run the cell that defines '{var}', or change '{inner}' not to use it; then run the pipeline again.",
    )


def _size(value: Any) -> int:
    try:
        return len(cloudpickle.dumps(value, protocol=4))
    except Exception:  # noqa: BLE001 - what cannot be pickled alone is not what made it large
        return 0


def largest_values(func: Any, top: int = 3) -> list[tuple[str, str, int]]:
    """(name, type, pickled bytes) of the largest values ``func`` and its helpers read, largest first."""
    sizes: dict[str, tuple[str, str, int]] = {}
    values = [(n, v) for f in helpers(func) for n, v in references(f).items()]
    modules: set[int] = set()
    for n, v in values:
        if local_module(v) and id(v) not in modules:  # a module of the user's travels whole: its values count
            modules.add(id(v))
            values += [(f"{n}.{k}", x) for k, x in vars(v).items() if not k.startswith("__")]
        if n in sizes or isinstance(v, (types.ModuleType, types.FunctionType, type)) or type(v).__name__ == "Component":
            continue
        sizes[n] = (n, type(v).__name__, _size(v))
    return sorted((v for v in sizes.values() if v[2] >= 1_000_000), key=lambda v: -v[2])[:top]


def too_large(pipeline: Any, size: int, limit: int) -> DefinitionError:
    """The error for ``pipeline`` whose package is ``size`` bytes, over ``limit``: which component's
    captured values make it large, and how to pass them instead."""
    comps = {id(s.component): s.component for s in pipeline.steps.values()}.values()
    comp = max(comps, key=lambda c: len(c.payload))
    big = largest_values(comp.func)
    what = ", ".join(f"'{n}' ({t}, {b / 1e6:.1f} MB)" for n, t, b in big)
    return DefinitionError(
        f"Pipeline '{pipeline.name}' packages to {size / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit",
        f"Component '{comp.name}' captures {what} from the notebook, and a step's code carries what it captures"
        if big else f"Component '{comp.name}' pickles to {len(comp.payload) / 1e6:.1f} MB",
        "Save a large value to a file and pass its path as an input (or make it in a step and pass the "
        "Output[Dataset]), or load it inside the component.",
    )
