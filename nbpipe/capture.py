"""Capture a component's function by value: pickle, refuse live resources, fingerprint.

:func:`capture_function` pickles a function with cloudpickle (dill as a fallback), together
with the notebook globals and helpers it uses *now*, and the source lines its tracebacks need
(:mod:`nbpipe.sourcemap`). Both picklers refuse live external resources — open files, sockets,
locks, database connections, generators, threads, processes… — that dill would otherwise
"pickle" into a re-opened or re-created resource (a file re-opened for writing is truncated),
naming the variable and the fix. :func:`fingerprint_parts` hashes what the function runs
(its source, the values and helpers it uses) in named parts, stable across kernel restarts.

Non-goals: deciding *when* to capture (:class:`nbpipe.component.Component` does it at
definition, to check, and again at submit) and long-term storage of pickles.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import sys
import sysconfig
import types
from typing import Any, Callable

import cloudpickle

from . import sourcemap
from .errors import DefinitionError, function_kind_error
from .signature import source_of

# (module, attribute path, what it is). Looked up only in modules already imported: an object
# of a class from a module nobody imported cannot exist.
_UNSAFE: list[tuple[str, str, str]] = [
    ("_io", "_IOBase", "an open file"),
    ("socket", "socket", "a network socket"),
    ("_thread", "LockType", "a lock"),
    ("_thread", "RLock", "a lock"),
    ("threading", "Condition", "a threading.Condition"),
    ("threading", "Semaphore", "a semaphore"),
    ("threading", "Event", "a threading.Event"),
    ("threading", "Barrier", "a threading.Barrier"),
    ("threading", "Thread", "a thread"),
    ("sqlite3", "Connection", "a database connection"),
    ("sqlite3", "Cursor", "a database cursor"),
    ("types", "GeneratorType", "a generator"),
    ("types", "AsyncGeneratorType", "an async generator"),
    ("types", "CoroutineType", "a coroutine"),
    ("subprocess", "Popen", "a subprocess handle"),
    ("selectors", "BaseSelector", "a selector"),
    ("select", "epoll", "an epoll object"),
    ("mmap", "mmap", "a memory map"),
    ("queue", "Queue", "a queue"),
    ("asyncio.locks", "Lock", "a lock (asyncio)"),
    ("asyncio.locks", "Event", "an asyncio.Event"),
    ("asyncio.locks", "Condition", "an asyncio.Condition"),
    ("asyncio.locks", "Semaphore", "a semaphore (asyncio)"),
    ("asyncio.locks", "Barrier", "an asyncio.Barrier"),
    ("asyncio.queues", "Queue", "a queue (asyncio)"),
    ("tempfile", "TemporaryDirectory", "a temporary directory (deleted with the notebook's object)"),
    ("multiprocessing.queues", "Queue", "a multiprocessing queue"),
    ("multiprocessing.process", "BaseProcess", "a process"),
    ("multiprocessing.connection", "Connection", "a pipe connection"),
    ("multiprocessing.pool", "Pool", "a process pool"),
    ("concurrent.futures._base", "Executor", "an executor (thread or process pool)"),
    ("asyncio.events", "AbstractEventLoop", "an event loop"),
    ("zipfile", "ZipFile", "an open zip file"),
    ("tarfile", "TarFile", "an open tar file"),
    ("http.client", "HTTPConnection", "a network connection"),
    ("logging", "Handler", "a logging handler"),
    ("psycopg2.extensions", "connection", "a database connection"),
    ("psycopg.connection", "Connection", "a database connection"),
    ("sqlalchemy.engine.base", "Connection", "a database connection"),
    ("sqlalchemy.engine.base", "Engine", "a database engine (a pool of connections)"),
]
_SAFE_FILES = (io.StringIO, io.BytesIO)
_KIND: dict[type, str] = {}


def unsafe_kind(obj: Any) -> str:
    """What live external resource ``obj`` is ("an open file", "a lock"…), or "" if none."""
    t = type(obj)
    kind = _KIND.get(t)
    if kind is None:
        kind = ""
        for mod, attr, what in _UNSAFE:
            m = sys.modules.get(mod)
            cls = getattr(m, attr, None) if m is not None else None
            if isinstance(cls, type) and issubclass(t, cls):
                kind = what
                break
        if kind == "an open file" and issubclass(t, _SAFE_FILES):
            kind = ""
        _KIND[t] = kind
    if kind == "an open file" and any(obj is s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)):
        return ""  # pickled by reference (the step's own stream)
    return kind


class UnsafeCapture(Exception):
    """Raised while pickling when the pickler meets a live external resource."""

    def __init__(self, obj: Any, kind: str):
        super().__init__(kind)
        self.obj, self.kind = obj, kind


class _SafeCloudPickler(cloudpickle.CloudPickler):
    def reducer_override(self, obj: Any) -> Any:
        kind = unsafe_kind(obj)
        if kind:
            raise UnsafeCapture(obj, kind)
        return super().reducer_override(obj)


def _dill_dumps(obj: Any) -> bytes:
    import dill

    class _SafeDillPickler(dill.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            kind = unsafe_kind(obj)
            if kind:
                raise UnsafeCapture(obj, kind)
            return NotImplemented

    buf = io.BytesIO()
    _SafeDillPickler(buf, protocol=4, recurse=True).dump(obj)
    return buf.getvalue()


# ---------------------------------------------------------------- what a function uses


def by_value_modules(func: Callable[..., Any]) -> list[types.ModuleType]:
    """Modules to pickle by value: the function's own, unless it is an installed package."""
    mod = sys.modules.get(getattr(func, "__module__", "") or "")
    if mod is None or mod.__name__ == "__main__":
        return []
    path = getattr(mod, "__file__", None) or ""
    if not path or path.startswith(_installed_roots()):
        return []
    return [mod]


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple[str, ...]:
    """Where installed packages and the standard library live (``sysconfig`` expands its path
    templates on every call: ~0.2 ms, once per function per capture before this was kept)."""
    paths = sysconfig.get_paths()
    return tuple(paths[k] for k in ("purelib", "platlib", "stdlib"))


def local_module(mod: Any) -> bool:
    """A module of the user's own (a script or package next to the notebook), not an installed one:
    a step process may not find it on its path, so it travels by value, and its file is part of
    the fingerprint (edited and reloaded, the step runs anew)."""
    name = getattr(mod, "__name__", "") or ""
    path = getattr(mod, "__file__", None) or ""
    return (isinstance(mod, types.ModuleType) and name != "__main__" and name.split(".")[0] not in _OWN_PACKAGES
            and path.endswith(".py") and not path.startswith(_installed_roots())
            and name.split(".")[0] not in _distributed(tuple(sys.path)))


@functools.lru_cache(maxsize=4)
def _distributed(path: tuple[str, ...]) -> frozenset[str]:
    """Top-level names that installed distributions provide, wherever they are on ``path`` (user site,
    a ``PYTHONPATH`` folder, an editable install): imported by name in the step, where nbpipe.pins
    checks their version, never shipped by value."""
    from importlib import metadata

    return frozenset(metadata.packages_distributions())


_OWN_PACKAGES = ("nbpipe", "kernel_magics")  # importable wherever a step runs, and full of runtime state


def _class_functions(cls: type) -> list[types.FunctionType]:
    """The functions a class's body defines (methods, static and class methods, properties)."""
    out = []
    for m in vars(cls).values():
        for f in (m.fget, m.fset, m.fdel) if isinstance(m, property) else (getattr(m, "__func__", m),):
            if isinstance(f, types.FunctionType):
                out.append(f)
    return out


def _by_value(func: Any) -> bool:
    mod = getattr(func, "__module__", "") or ""
    return mod == "__main__" or mod not in sys.modules or bool(by_value_modules(func))


def references(func: Any) -> dict[str, Any]:
    """The globals (read anywhere in the function's code) and closure values ``func`` uses."""
    refs: dict[str, Any] = {}
    code = getattr(func, "__code__", None)
    if code is None:
        return refs
    glb = func.__globals__
    stack = [code]
    while stack:
        c = stack.pop()
        for n in c.co_names:
            if n in glb:
                refs[n] = glb[n]
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    for n, cell in zip(code.co_freevars, func.__closure__ or ()):
        try:
            refs[n] = cell.cell_contents
        except ValueError:
            pass
    for i, d in enumerate(func.__defaults__ or ()):
        refs[f"<default {i}>"] = d
    for k, d in (func.__kwdefaults__ or {}).items():
        refs[f"<default {k}>"] = d
    return refs


def helpers(func: Any) -> list[Any]:
    """``func`` and the by-value functions it reaches (notebook helpers, other cells' code)."""
    out, seen, todo = [], set(), [func]
    while todo:
        f = todo.pop(0)
        if id(f) in seen:
            continue
        seen.add(id(f))
        out.append(f)
        for v in references(f).values():
            inner = getattr(v, "func", None) if type(v).__name__ == "Component" else _wrapped(v)
            if isinstance(inner, types.FunctionType):
                v = inner
            if isinstance(v, types.FunctionType) and _by_value(v):
                todo.append(v)
            elif isinstance(v, type) and _by_value(v):
                todo.extend(_class_functions(v))
    return out


def modules_by_value(func: Any) -> list[types.ModuleType]:
    """The modules to pickle by value for ``func``: those of the by-value functions it reaches and
    the user's own modules it reads (``import mylib as ml`` then ``ml.f()`` in the component)."""
    mods: dict[str, types.ModuleType] = {}
    for f in helpers(func):
        for m in by_value_modules(f):
            mods[m.__name__] = m
        for v in references(f).values():
            if local_module(v):
                mods[v.__name__] = v
    return list(mods.values())


_IMMUTABLE = (bool, int, float, complex, str, bytes, type(None), type(Ellipsis))


def _stable(value: Any, depth: int = 0) -> bool:
    """A value that cannot change in place: equal now means equal when pickled."""
    if isinstance(value, _IMMUTABLE):
        return True
    return type(value) in (tuple, frozenset) and depth < 10 and all(_stable(v, depth + 1) for v in value)


_DIGESTING: set[int] = set()  # functions being digested (a value of theirs may hold them)


def _wrapped(obj: Any) -> types.FunctionType | None:
    """The notebook function inside a wrapper object (``functools.lru_cache``, ``cache``, any object
    ``functools.update_wrapper`` made), which plain pickle names by reference only."""
    if isinstance(obj, (types.FunctionType, type, types.ModuleType)):
        return None
    try:
        inner = vars(obj).get("__wrapped__")
    except TypeError:  # no __dict__
        return None
    return inner if isinstance(inner, types.FunctionType) and _by_value(inner) else None


class _DigestPickler(pickle.Pickler):
    """Plain pickle, but notebook functions and classes inside a value (``STEPS = [clean]``) count
    by their content, not by their name, so redefining one changes the digest."""

    def reducer_override(self, obj: Any) -> Any:
        wrapped = _wrapped(obj)
        if wrapped is not None:  # @functools.lru_cache / @cache on a notebook helper: the function inside
            return str, (f"wrapped:{type(obj).__qualname__}:{(value_digest(wrapped) or b'').hex()}",)
        if isinstance(obj, types.FunctionType) and _by_value(obj):
            if id(obj) in _DIGESTING:  # STEPS = [f] read by f itself: its code is already counted
                return str, (f"function:{obj.__qualname__}",)
            _DIGESTING.add(id(obj))
            try:
                parts = fingerprint_parts(obj)
            finally:
                _DIGESTING.discard(id(obj))
            return str, (f"function:{parts['code']}:{parts['globals']}",)
        if isinstance(obj, type) and _by_value(obj):
            if id(obj) in _DIGESTING:
                return str, (f"class:{obj.__qualname__}",)
            _DIGESTING.add(id(obj))
            try:
                return str, (f"class:{class_digest(obj)}",)
            finally:
                _DIGESTING.discard(id(obj))
        return NotImplemented


def value_digest(value: Any) -> bytes | None:
    """A content digest of ``value`` (as plain pickle sees it, notebook code by content), or None if
    plain pickle cannot take it. Same bytes as ``pickle.dumps`` for plain data."""
    h = hashlib.sha256()

    class _Sink:
        def write(self, data: bytes) -> int:
            h.update(data)
            return len(data)

    try:
        _DigestPickler(_Sink(), protocol=4).dump(_canonical(value, [_CANON_BUDGET]))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - unpicklable here: the caller falls back
        return None
    return h.digest()


_CANON_BUDGET = 100_000  # containers' items looked at for sets; past that a value is taken as it is


def _canonical(value: Any, budget: list[int]) -> Any:
    """``value`` with each set as its items in a fixed order: a set of strings iterates in an order
    that changes with each process's hash seed, so its digest (a cache key) changed with every kernel
    restart. Plain containers are walked (up to a budget); one without sets comes back as it is."""
    t = type(value)
    if t in (set, frozenset):
        items = [_canonical(v, budget) for v in value]
        return ("<nbpipe:set>", t.__name__, sorted(items, key=lambda v: value_digest(v) or repr(v).encode()))
    if t not in (list, tuple, dict) or len(value) > budget[0]:
        return value
    budget[0] -= len(value)
    if t is dict:
        pairs = [(_canonical(k, budget), _canonical(v, budget)) for k, v in value.items()]
        same = all(a is k and b is v for (a, b), (k, v) in zip(pairs, value.items()))
        return value if same else ("<nbpipe:dict>", pairs)
    items = [_canonical(v, budget) for v in value]
    return value if all(a is b for a, b in zip(items, value)) else t(items)


def capture_key(func: Any) -> tuple[Any, ...] | None:
    """What pickling ``func`` would capture, as a cheap key to compare with :func:`same_capture`:
    each by-value function it reaches (the objects, with their code) and each global, closure value
    and default they read — modules, installed functions and classes by identity, immutable values
    by value, other values (a dict, a DataFrame) by :func:`value_digest`. None when one cannot be
    told that way (a class of the notebook, an unpicklable value): only cloudpickle can say."""
    key: list[Any] = []
    for f in helpers(func):
        key += [f, getattr(f, "__code__", None)]
        for n, v in references(f).items():
            if _stable(v):
                key.append(("v", n, type(v), v))
            elif local_module(v):
                return None  # reloaded after an edit, it is the same object with new code: pickle it again
            elif isinstance(v, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType)) or (
                    isinstance(v, type) and not _by_value(v)):
                key.append(("o", n, v))  # by identity: a by-value function is followed by helpers()
            elif isinstance(v, type) or type(v).__name__ == "Component":
                return None
            else:
                digest = value_digest(v)
                if digest is None:
                    return None
                key.append(("d", n, digest))
    return tuple(key)


def same_capture(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    """Whether two :func:`capture_key` keys say the same thing would be captured."""
    if a is None or b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if type(x) is tuple and type(y) is tuple:
            if x[:2] != y[:2]:
                return False
            if x[0] == "o" and x[2] is not y[2] or x[0] == "d" and x[2] != y[2]:
                return False
            if x[0] == "v" and (x[2] is not y[2] or x[3] != y[3] or (
                    x[2] not in (str, bytes, int, bool) and repr(x[3]) != repr(y[3]))):
                return False  # repr too: 0.0 == -0.0 and (1,) == (True,), but they pickle differently
        elif x is not y:
            return False
    return True


def find_path(func: Any, target: Any, depth: int = 5) -> str:
    """How ``func`` reaches ``target``: ``fh``, ``clean → fh``, ``config['log']``…"""
    seen: set[int] = set()

    def walk(obj: Any, path: str, d: int) -> str:
        if obj is target:
            return path
        if d <= 0 or id(obj) in seen or isinstance(obj, (str, bytes, int, float, types.ModuleType)):
            return ""
        seen.add(id(obj))
        kids: list[tuple[str, Any]] = []
        owner = getattr(obj, "__self__", None)
        if isinstance(obj, (types.MethodType, types.BuiltinMethodType)) and not isinstance(owner, types.ModuleType):
            kids = [(f"{path}.__self__", owner)]  # fh.write: the file it writes to
        elif isinstance(obj, functools.partial):
            kids = [(f"{path}.func", obj.func)] + [(f"{path}.args[{i}]", v) for i, v in enumerate(obj.args)] + [
                (f"{path}.keywords[{k!r}]", v) for k, v in obj.keywords.items()]
        elif isinstance(obj, types.FunctionType):
            kids = [(f"{path} → {n}" if path else n, v) for n, v in references(obj).items()]
        elif isinstance(obj, dict):
            kids = [(f"{path}[{k!r}]", v) for k, v in list(obj.items())[:1000]]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            kids = [(f"{path}[{i}]", v) for i, v in enumerate(list(obj)[:1000])]
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            inner = getattr(obj, "func", None) if type(obj).__name__ == "Component" else None
            kids = [(path, inner)] if inner is not None else [
                (f"{path}.{k}", v) for k, v in list(vars(obj).items())[:1000]]
        for p, v in kids:
            found = walk(v, p, d - 1)
            if found:
                return found
        return ""

    return walk(func, "", depth)


def _describe(obj: Any) -> str:
    name = getattr(obj, "name", None)
    mode = getattr(obj, "mode", None)
    bits = [type(obj).__name__]
    if isinstance(name, str):
        bits.append(repr(name))
    if isinstance(mode, str):
        bits.append(f"mode {mode!r}")
    return " ".join(bits)


def _culprit(func: Callable[..., Any]) -> str:
    """Name the global or closure variable that cannot be pickled, if we can find it."""
    for n, v in references(func).items():
        if isinstance(v, types.ModuleType):
            continue
        try:
            cloudpickle.dumps(v)
        except Exception as exc:  # noqa: BLE001 - any pickling failure identifies the culprit
            return f"'{n}' ({type(v).__name__}: {exc})"
    return ""


def unsafe_error(who: str, path: str, obj: Any, kind: str, where: str = "the function") -> DefinitionError:
    """The error for a live resource ``obj`` (of ``kind``) that ``who`` reaches as ``path``."""
    var = path.split(" → ")[-1].split("[")[0].split(".")[0]
    return DefinitionError(
        f"{who} '{path}', {kind} ({_describe(obj)}), from the notebook",
        "A step runs in another process: it cannot share it, and re-creating it there would not "
        "be the same resource" + (" (a file re-opened for writing is emptied)" if "file" in kind else ""),
        f"Create it inside {where}, or pass a path (or other plain value) as an input instead of '{var}'.",
    )


# ---------------------------------------------------------------- pickling


def _with_sources(func: Any) -> Any:
    """A copy of ``func`` carrying its source record (the user's function stays untouched)."""
    if not isinstance(func, types.FunctionType) or not _by_value(func):
        return func  # pickled by reference: its real file is where it is imported from
    record = sourcemap.collect(helpers(func))
    if not record["code"]:
        return func
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__, copy.__module__, copy.__doc__ = func.__qualname__, func.__module__, func.__doc__
    copy.__annotations__ = func.__annotations__
    copy.__dict__.update(func.__dict__)
    setattr(copy, sourcemap.ATTR, record)
    return copy


def pickle_function(func: Callable[..., Any], name: str) -> tuple[bytes, str]:
    """Return (payload, serializer) for ``func``; raise DefinitionError if it cannot be pickled
    or captures a live external resource."""
    if (refused := function_kind_error(func, name)) is not None:
        raise refused
    mods, own = modules_by_value(func), by_value_modules(func)
    try:
        return _pickle(func, name, mods)
    except DefinitionError:
        if len(mods) == len(own):
            raise
    # A module of the user's holding what cannot travel (a lock, a connection made at import): the step
    # imports it by name instead, as before modules travelled by value.
    return _pickle(func, name, own)


def _pickle(func: Callable[..., Any], name: str, mods: list[types.ModuleType]) -> tuple[bytes, str]:
    for m in mods:
        cloudpickle.register_pickle_by_value(m)
    target = _with_sources(func)
    try:
        try:
            buf = io.BytesIO()
            _SafeCloudPickler(buf, protocol=4).dump(target)
            return buf.getvalue(), "cloudpickle"
        except UnsafeCapture:
            raise
        except Exception as first:  # noqa: BLE001
            try:
                return _dill_dumps(target), "dill"
            except UnsafeCapture:
                raise
            except Exception:  # noqa: BLE001
                culprit = _culprit(func)
                raise DefinitionError(
                    f"Component '{name}' cannot be pickled",
                    f"It uses {culprit}" if culprit else f"Cloudpickle said: {first}",
                    "Create that object inside the function (or pass it as an input) instead of "
                    "capturing it from the notebook.",
                ) from first
    except UnsafeCapture as exc:
        path = find_path(func, exc.obj) or "a value it uses"
        raise unsafe_error(f"Component '{name}' uses", path, exc.obj, exc.kind) from None
    finally:
        for m in mods:
            cloudpickle.unregister_pickle_by_value(m)


# ---------------------------------------------------------------- fingerprint


def _source(func: Any) -> bytes:
    try:
        # Without the trailing newline: a kernel's cell ends with one, the same cell exported from
        # the saved notebook does not, and both must give the same digest (and share the cache).
        return source_of(func).rstrip().encode()
    except (OSError, TypeError):  # no source (exec'd code): all of its code, constants and nested code too
        code = getattr(func, "__code__", None)
        return _code_bytes(code) if code is not None else repr(func).encode()


def _code_bytes(code: types.CodeType) -> bytes:
    """What a code object does, nested code included (marshal's bytes depend on reference counts)."""
    consts = [_code_bytes(c) if isinstance(c, types.CodeType) else repr(c).encode() for c in code.co_consts]
    return b"\0".join([code.co_code, *consts, repr((code.co_names, code.co_varnames, code.co_freevars,
                                                        code.co_cellvars)).encode()])


def fingerprint_parts(func: Callable[..., Any], component_digest: Callable[[Any], str | None] = lambda v: None,
                      _seen: set[int] | None = None) -> dict[str, str]:
    """Content hashes of what a component runs, in named parts: ``code`` (its own source) and
    ``globals`` (the names it reads and their values; notebook helpers by their own source).
    Stable across kernel restarts (unlike pickle bytes), so caching survives a restart but
    not a change."""
    seen = _seen if _seen is not None else set()
    seen.add(id(func))
    code = hashlib.sha256(_source(func)).hexdigest()
    h = hashlib.sha256()
    refs = references(func)
    for n in sorted(refs):
        v = refs[n]
        h.update(n.encode())
        digest = component_digest(v)
        if digest is not None:
            h.update(digest.encode())
        elif isinstance(v, (types.FunctionType, type)) and id(v) not in seen:
            if _by_value(v):
                if isinstance(v, types.FunctionType):
                    parts = fingerprint_parts(v, component_digest, seen)
                    h.update((parts["code"] + parts["globals"]).encode())
                else:
                    h.update(class_digest(v, component_digest, seen).encode())
            else:
                h.update(f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', '')}".encode())
        elif local_module(v):
            h.update(f"module:{v.__name__}:".encode() + _file_digest(v.__file__))
        elif isinstance(v, types.ModuleType):
            h.update(f"module:{v.__name__}:{getattr(v, '__version__', '')}".encode())
        elif isinstance(v, (int, float, str, bytes, bool, type(None), tuple, frozenset)):
            h.update(repr(_canonical(v, [_CANON_BUDGET])).encode())  # a frozenset's own order is per process
        else:
            h.update(value_digest(v) or type(v).__qualname__.encode())  # unpicklable state: its type
    return {"code": code, "globals": h.hexdigest()}


def class_digest(cls: type, component_digest: Callable[[Any], str | None] = lambda v: None,
                 _seen: set[int] | None = None) -> str:
    """A notebook class by content: its source, and what its methods read (a global constant a
    method uses, a helper it calls), so editing either changes the digest like a function's."""
    seen = _seen if _seen is not None else set()
    seen.add(id(cls))
    h = hashlib.sha256(_source(cls))
    for f in _class_functions(cls):
        if id(f) not in seen and _by_value(f):
            h.update(fingerprint_parts(f, component_digest, seen)["globals"].encode())
    return h.hexdigest()


def _file_digest(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).digest()
    except OSError:
        return b"?"
