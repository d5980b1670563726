"""Source lines for step tracebacks: recorded at capture, put back in the step process.

cloudpickle (3.1.3 on) names every code object it pickles ``<dynamic-code>``, so a step's
traceback would read ``File "<dynamic-code>", line 3`` with no source. At capture time
:func:`collect` records, for the component's function and the notebook helpers it uses, a
label that means something to the user (``Cell In[7]`` as IPython says it, or the ``.py``
file) and the source lines of each function. The record travels inside the payload, as the
``__nbpipe_sources__`` attribute of the pickled function (old payloads simply lack it). In
the step, :func:`restore` renames the code objects to their labels and registers the lines
in :mod:`linecache`, so tracebacks and ``pdb`` show the real lines.

Standard library (and :mod:`nbpipe.errors`) only: the step entrypoint and the KFP bootstrap import it.
Non-goal: full files; only the lines of the captured functions are carried.
"""

from __future__ import annotations

import linecache
import sys
import types
import zlib
from typing import Any

from .errors import cell_label as _label

ATTR = "__nbpipe_sources__"
_MAX_LINES = 2000  # per function; a longer one is carried without source


def code_key(code: types.CodeType) -> str:
    """Identifies a code object across pickling (name, first line and bytecode survive it)."""
    return f"{code.co_qualname}@{code.co_firstlineno}#{zlib.crc32(code.co_code):08x}"


def _last_line(code: types.CodeType) -> int:
    last = code.co_firstlineno
    stack = [code]
    while stack:
        c = stack.pop()
        last = max([last] + [ln for _, _, ln in c.co_lines() if ln is not None])
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return last


_SEEN: dict[int, tuple[types.CodeType, str, int, list[str]]] = {}
_CELLS: dict[str, str] = {}  # file name -> label, for cells compiled outside a kernel (export)


def name_cell(filename: str, number: int) -> None:
    """Code compiled from ``filename`` is notebook cell ``number``: label it ``Cell In[number]``, as a
    kernel labels its cells, so the traceback of an exported run names the cell as a kernel run does."""
    _CELLS[filename] = f"Cell In[{number}]"


def _entry(code: types.CodeType) -> tuple[str, str, int, list[str]] | None:
    """(key, label, first line, lines) of one function's code; lines memoized per code object."""
    hit = _SEEN.get(id(code))
    if hit is None or hit[0] is not code:
        lines = linecache.getlines(code.co_filename)
        if not lines:
            return None
        first, last = code.co_firstlineno, _last_line(code)
        if last - first > _MAX_LINES:
            return None
        if len(_SEEN) > 4096:
            _SEEN.clear()
        hit = _SEEN[id(code)] = (code, code_key(code), first, lines[first - 1:last])
    return hit[1], _CELLS.get(code.co_filename) or _label(code.co_filename), hit[2], hit[3]


def collect(funcs: list[Any]) -> dict[str, Any]:
    """The record for ``funcs`` (the component's function first, then the helpers it uses)."""
    codes: dict[str, str] = {}
    files: dict[str, dict[int, str]] = {}
    origin: dict[str, str] = {}  # label -> file it stands for
    for f in funcs:
        code = getattr(f, "__code__", None)
        if not isinstance(code, types.CodeType):
            continue
        entry = _entry(code)
        if entry is None:
            continue
        key, label, first, lines = entry
        if origin.setdefault(label, code.co_filename) != code.co_filename:
            label = f"{label} ({code.co_filename})"  # two cells run under one count (no history)
        codes[key] = label
        text = files.setdefault(label, {})
        for i, line in enumerate(lines):
            text[first + i] = line
    return {"code": dict(sorted(codes.items())),
            "files": {label: sorted(lines.items()) for label, lines in sorted(files.items())}}


def _relabel(code: types.CodeType, label: str) -> types.CodeType:
    consts = tuple(_relabel(c, label) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=label, co_consts=consts)


def restore(func: Any) -> None:
    """Give ``func`` and the helpers it reaches their recorded file labels and source lines."""
    info = getattr(func, ATTR, None)
    if not isinstance(info, dict):
        return
    for label, numbered in info.get("files", {}).items():
        if label in linecache.cache and linecache.cache[label][1] is not None:
            continue  # a real file of that name is here: linecache reads it
        lines = ["\n"] * (max((n for n, _ in numbered), default=0))
        for n, text in numbered:
            lines[n - 1] = text if text.endswith("\n") else text + "\n"
        linecache.cache[label] = (sum(map(len, lines)), None, lines, label)
    codes: dict[str, str] = info.get("code", {})
    seen: set[int] = set()
    todo: list[Any] = [func]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            label = codes.get(code_key(obj.__code__))
            if label is not None:
                obj.__code__ = _relabel(obj.__code__, label)
            if label is None:
                continue  # not captured by value (a library function): its globals are not ours
            todo.extend(v for v in obj.__globals__.values() if isinstance(v, (types.FunctionType, type))
                        or isinstance(getattr(v, "func", None), types.FunctionType))
            todo.extend(c.cell_contents for c in obj.__closure__ or () if _filled(c))
        elif isinstance(obj, type):
            if obj.__module__ != "__main__" and obj.__module__ in sys.modules:
                continue  # an importable class, not captured by value
            todo.extend(v for v in vars(obj).values() if isinstance(v, (types.FunctionType, staticmethod,
                                                                         classmethod)))
        elif isinstance(obj, (staticmethod, classmethod)):
            todo.append(obj.__func__)
        else:
            inner = getattr(obj, "func", None)  # an nbpipe Component used as a helper
            if isinstance(inner, types.FunctionType):
                todo.append(inner)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True
