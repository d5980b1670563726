"""``@component``: a typed Python function captured by value, with its run options.

The function is captured (:mod:`nbpipe.capture`) at definition time, so an unpicklable or
unsafe closure fails here, naming the culprit, not later in a step — and captured again each
time a pipeline is submitted (:meth:`Component.capture`), so what runs is what the kernel has
*now*: the notebook globals and helpers as they are at submit time. Modules that are not
installed packages (a notebook's ``__main__``, a script next to it) are pickled by value.

Non-goals: running anything remote (see :mod:`nbpipe.client`), long-term storage of pickles
(a payload must be loaded by the same Python minor version that made it).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import cloudpickle

from . import pins
from .capture import capture_key, fingerprint_parts, pickle_function, same_capture
from .errors import DefinitionError
from .signature import InputSpec, OutputSpec, analyze, source_of
from .tracing import current_trace

DEFAULT_IMAGE = "nbpipe/base:py{major}.{minor}"
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any, what: str) -> float | None:
    """Seconds from a number, a ``timedelta`` or an ISO 8601 duration like ``P7D`` / ``PT30M``."""
    if value is None:
        return None
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise DefinitionError(f"{what} must not be negative (got {value})")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value.strip().upper())
        if m and value.strip().upper() not in ("P", "PT"):
            parts = {k: float(v) for k, v in m.groupdict().items() if v}
            return (
                parts.get("w", 0) * 604800 + parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600
                + parts.get("m", 0) * 60 + parts.get("s", 0)
            )
    raise DefinitionError(
        f"{what} {value!r} is not a duration",
        hint="Use seconds (300), a datetime.timedelta, or ISO 8601 like 'P7D' or 'PT30M'.",
    )


@dataclass(frozen=True)
class Resources:
    """What a step asks for: ``cpu`` ("500m", 2), ``memory`` ("2Gi"), ``gpu`` (count)."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0

    def __post_init__(self) -> None:
        if self.cpu is not None and not re.fullmatch(r"\d+(\.\d+)?m?", str(self.cpu)):
            raise DefinitionError(f"cpu={self.cpu!r} is not a CPU quantity", hint="Use e.g. 2, 0.5 or '500m'.")
        if self.memory is not None and not re.fullmatch(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T|k)?", str(self.memory)):
            raise DefinitionError(f"memory={self.memory!r} is not a memory quantity", hint="Use e.g. '512Mi' or '4Gi'.")
        if not isinstance(self.gpu, int) or self.gpu < 0:
            raise DefinitionError(f"gpu={self.gpu!r} must be a whole number of GPUs")
        object.__setattr__(self, "cpu", None if self.cpu is None else str(self.cpu))


@dataclass(frozen=True)
class Options:
    """Run options of a component; a step may override them."""

    base_image: str | None = None
    packages: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    retries: int = 0
    backoff: float = 1.0  # seconds before the first retry; doubles each time, capped at max_backoff
    backoff_factor: float = 2.0
    max_backoff: float = 300.0
    timeout: float | None = None
    cache: bool = True
    max_cache_staleness: float | None = None  # seconds; None = cached results never expire
    env: tuple[tuple[str, str], ...] = ()
    workers: int = 1  # > 1: a distributed step, N processes started together (see nbpipe.executors.gang)
    kubeflow_job: bool = False  # on Kubernetes: run the workers as a Training Operator PyTorchJob

    def to_json(self) -> dict[str, Any]:
        return _options_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Options":
        data = dict(data)
        data["packages"] = tuple(data.get("packages", ()))
        data["resources"] = Resources(**data.get("resources", {}))
        data["env"] = tuple(sorted(dict(data.get("env", {})).items()))
        return cls(**data)


def pin_packages(packages: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``packages`` with each bare requirement pinned to the version this environment has.

    ``scikit-learn`` becomes ``scikit-learn==1.7.2`` (extras and markers kept) when the
    distribution is installed here; requirements with a version, a URL, a marker that does not
    apply here, or no installed distribution are kept as written. Versions are read once per
    requirement set and process (an upgrade in a running kernel takes effect for imports only
    after a restart anyway). ``NBPIPE_PIN_PACKAGES=0`` turns pinning off.
    """
    if not packages or os.environ.get("NBPIPE_PIN_PACKAGES", "1").lower() in ("0", "false", "no", "off"):
        return tuple(packages)
    return _pin(tuple(packages))


@functools.lru_cache(maxsize=256)
def _pin(packages: tuple[str, ...]) -> tuple[str, ...]:
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:
        return packages
    out = []
    for text in packages:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            out.append(text)  # the step says what is wrong with it (see missing)
            continue
        if req.url or req.specifier or (req.marker is not None and not req.marker.evaluate()):
            out.append(text)
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            out.append(text)
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f"; {req.marker}" if req.marker is not None else ""
        out.append(f"{req.name}{extras}=={version}{marker}")
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _options_json(opts: Options) -> dict[str, Any]:
    # Options are frozen and hashable; a 500-step pipeline shares a handful of them.
    d = asdict(opts)
    d["packages"] = list(pin_packages(opts.packages))  # scikit-learn -> scikit-learn==<the kernel's>
    d["env"] = dict(opts.env)
    if opts.workers == 1:
        del d["workers"]  # specs (and their digests) of ordinary steps stay as they were
    else:  # executors read the gang size from the job's environment (nbpipe.executors.gang)
        d["env"]["NBPIPE_WORKERS"] = str(opts.workers)
    if not opts.kubeflow_job:
        del d["kubeflow_job"]  # (digests of the specs without it unchanged)
    else:  # the Kubernetes executor reads it from the job's environment (nbpipe.executors.k8s_pytorchjob)
        d["env"]["NBPIPE_KUBEFLOW_JOB"] = "PyTorchJob"
    return d


def make_options(
    *,
    base_image: str | None = None,
    packages: list[str] | tuple[str, ...] | None = None,
    resources: Resources | dict[str, Any] | None = None,
    cpu: Any = None,
    memory: Any = None,
    gpu: int | None = None,
    retries: int | None = None,
    backoff: Any = None,
    timeout: Any = None,
    cache: bool | None = None,
    max_cache_staleness: Any = None,
    env: dict[str, str] | None = None,
    workers: int | None = None,
    kubeflow_job: bool | None = None,
    base: Options | None = None,
    owner: str = "component",
) -> Options:
    """Validate option values into :class:`Options`, layered over ``base``."""
    opts = base or Options()
    changes: dict[str, Any] = {}
    if base_image is not None:
        changes["base_image"] = str(base_image)
    if packages is not None:
        if isinstance(packages, str):
            packages = [packages]
        changes["packages"] = tuple(str(p) for p in packages)
    res = opts.resources
    if resources is not None:
        res = resources if isinstance(resources, Resources) else Resources(**resources)
    if cpu is not None or memory is not None or gpu is not None:
        res = Resources(
            cpu=cpu if cpu is not None else res.cpu,
            memory=memory if memory is not None else res.memory,
            gpu=gpu if gpu is not None else res.gpu,
        )
    changes["resources"] = res
    if retries is not None:
        if not isinstance(retries, int) or retries < 0:
            raise DefinitionError(f"{owner}: retries={retries!r} must be a whole number >= 0")
        changes["retries"] = retries
    if backoff is not None:
        changes["backoff"] = parse_duration(backoff, f"{owner}: backoff")
    if timeout is not None:
        t = parse_duration(timeout, f"{owner}: timeout")
        if not t:
            raise DefinitionError(f"{owner}: timeout must be more than 0 seconds")
        changes["timeout"] = t
    if cache is not None:
        changes["cache"] = bool(cache)
    if max_cache_staleness is not None:
        changes["max_cache_staleness"] = parse_duration(max_cache_staleness, f"{owner}: max_cache_staleness")
    if env is not None:
        changes["env"] = tuple(sorted((str(k), str(v)) for k, v in env.items()))
    if workers is not None:
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
            raise DefinitionError(f"{owner}: workers={workers!r} must be a whole number from 1 to 64",
                                  hint="workers=N runs the step as N processes started together (torch.distributed).")
        changes["workers"] = workers
    if kubeflow_job is not None:
        if not isinstance(kubeflow_job, bool):
            raise DefinitionError(f"{owner}: kubeflow_job={kubeflow_job!r} must be True or False")
        changes["kubeflow_job"] = kubeflow_job
    out = replace(opts, **changes)
    if out.kubeflow_job and out.workers < 2:
        raise DefinitionError(f"{owner}: kubeflow_job=True needs workers=N with N >= 2 (it has workers={out.workers})",
                              hint="kubeflow_job=True runs a distributed step as a Training Operator PyTorchJob: "
                                   "give the number of workers, e.g. @component(workers=2, kubeflow_job=True).")
    return out


# ---------------------------------------------------------------- component


@dataclass(frozen=True)
class Capture:
    """One capture of a component's function: the payload and the named parts of its digest."""

    payload: bytes
    serializer: str
    payload_digest: str
    code: str  # hash of the function's own source
    globals: str  # hash of the globals, helpers and closure values it uses


def _component_digest(value: Any) -> str | None:
    return value.digest if isinstance(value, Component) else None


class Component:
    """A reusable step: a function, its typed inputs/outputs and run options.

    Called inside a ``@pipeline`` it places a step; called anywhere else it simply runs the
    function, so it stays usable for quick checks in the notebook.
    """

    def __init__(self, func: Callable[..., Any], name: str | None = None, options: Options | None = None,
                 source: str | None = None, description: str | None = None, variable: str | None = None):
        if not callable(func) or isinstance(func, Component):
            raise DefinitionError(f"@component needs a function, got {type(func).__name__}")
        self.func = func
        self.name = name or func.__name__
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", self.name):
            raise DefinitionError(f"Component name {self.name!r} is not valid",
                                  hint="Use letters, digits, '_' and '-', starting with a letter.")
        # The notebook variable that holds this component, so a submit finds its newest definition.
        self.variable = variable or getattr(func, "__name__", self.name)
        self.options = options or Options()
        self.inputs: list[InputSpec]
        self.outputs: list[OutputSpec]
        self.inputs, self.outputs, self.return_style = analyze(func, self.name)
        if source is None:
            try:
                source = source_of(func)
            except (OSError, TypeError):
                source = ""
        self.source = source
        self.description = description if description is not None else (inspect.getdoc(func) or "")
        self.python = "%d.%d.%d" % sys.version_info[:3]
        self.cloudpickle_version = cloudpickle.__version__
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", self.name)
        self.__qualname__ = getattr(func, "__qualname__", self.name)
        self.__module__ = getattr(func, "__module__", "__main__")
        self.__wrapped__ = func
        self.signature = inspect.signature(func)
        self._capture: Capture | None = None
        self._capture_key: tuple[Any, ...] | None = None  # what the last capture read (see capture())
        self.capture()  # fails now, at definition, if the function cannot be captured

    def capture(self) -> Capture:
        """Pickle the function with the globals and helpers it uses *now*.

        Cheap when nothing changed: when everything the function reads is the same (functions and
        modules by identity, values by content; :func:`~nbpipe.capture.capture_key`), the last
        capture is reused without pickling; otherwise the last digests are reused when the payload
        bytes are the same. Raises :class:`DefinitionError` for an unpicklable or unsafe capture.
        """
        key = capture_key(self.func)
        last = self._capture
        if last is not None and same_capture(key, self._capture_key):
            return last
        payload, serializer = pickle_function(self.func, self.name)
        digest = hashlib.sha256(payload).hexdigest()
        self._capture_key = key
        if last is not None and last.payload_digest == digest and last.serializer == serializer:
            return last
        parts = fingerprint_parts(self.func, _component_digest)
        self._capture = Capture(payload, serializer, digest, parts["code"], parts["globals"])
        return self._capture

    # The latest capture, for code that reads a component's payload directly.
    @property
    def payload(self) -> bytes:
        return self._latest.payload

    @property
    def serializer(self) -> str:
        return self._latest.serializer

    @property
    def payload_digest(self) -> str:
        return self._latest.payload_digest

    @property
    def code_digest(self) -> str:
        c = self._latest
        return hashlib.sha256((c.code + c.globals).encode()).hexdigest()

    @property
    def _latest(self) -> Capture:
        assert self._capture is not None
        return self._capture

    @property
    def digest(self) -> str:
        """Content digest for caching, of the latest capture (see :meth:`digest_parts`)."""
        return self.digest_of(self._latest)

    def digest_parts(self, capture: Capture | None = None) -> dict[str, str]:
        """The named parts of the digest, so a cache miss can say what changed."""
        c = capture or self._latest
        sig = {"name": self.name, "inputs": [i.to_json() for i in self.inputs],
               "outputs": [o.to_json() for o in self.outputs], "serializer": c.serializer,
               "python": self.python.rsplit(".", 1)[0]}
        return {
            "code": c.code,
            "globals": c.globals,
            "signature": hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest(),
            "image": hashlib.sha256(self.image.encode()).hexdigest(),
            "packages": hashlib.sha256(json.dumps(self.options.to_json()["packages"]).encode()).hexdigest(),
        }

    def digest_of(self, capture: Capture) -> str:
        return hashlib.sha256(json.dumps(self.digest_parts(capture), sort_keys=True).encode()).hexdigest()

    @property
    def image(self) -> str:
        return self.options.base_image or DEFAULT_IMAGE.format(major=sys.version_info[0], minor=sys.version_info[1])

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)

    def to_spec(self, capture: Capture | None = None) -> dict[str, Any]:
        """This component's entry in a package spec (no payload bytes), of ``capture`` or the latest."""
        c = capture or self._latest
        return {
            "name": self.name,
            "digest": self.digest_of(c),
            "digest_parts": self.digest_parts(c),
            "description": self.description,
            "source": self.source,
            "inputs": [i.to_json() for i in self.inputs],
            "outputs": [o.to_json() for o in self.outputs],
            "return_style": self.return_style,
            "image": self.image,
            "options": self.options.to_json(),
            "payload": {"digest": c.payload_digest, "serializer": c.serializer, "size": len(c.payload)},
            "python": self.python,
            "cloudpickle": self.cloudpickle_version,
            **pins.spec_fields(self, c),  # "imports": ["scikit-learn==1.7.2", ...], checked by the step
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        trace = current_trace()
        if trace is not None:
            return trace.add_step(self, args, kwargs)
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}: {i.type}" for i in self.inputs)
        outs = ", ".join(f"{o.name}: {o.type}" for o in self.outputs) or "None"
        return f"<nbpipe component {self.name}({ins}) -> {outs}>"


def component(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    base_image: str | None = None,
    packages: list[str] | None = None,
    resources: Resources | dict[str, Any] | None = None,
    retries: int = 0,
    backoff: Any = 1.0,
    timeout: Any = None,
    cache: bool = True,
    max_cache_staleness: Any = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
    kubeflow_job: bool = False,
) -> Any:
    """Turn a typed function into a :class:`Component`. Works bare or with options.

    Parameters
    ----------
    name : step name (default: the function's name).
    base_image : container image for Kubernetes runs (default: nbpipe base image of this Python).
    packages : pip requirements installed before the step runs; a bare name is pinned to the
        version this kernel has when the pipeline is packaged (``scikit-learn`` → ``scikit-learn==1.7.2``).
    resources : :class:`Resources` (cpu, memory, gpu).
    retries, backoff : retry a failed step ``retries`` times, waiting ``backoff`` seconds
        (doubling) in between.
    timeout : seconds (or ISO 8601 duration) before the step is killed.
    cache, max_cache_staleness : reuse results of an identical earlier step, at most this old
        (``"P7D"``, like Kubeflow's ``max_cache_staleness``).
    workers : run the step as N worker processes started together (a gang) with the PyTorch
        environment (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK); rank 0's result is the step's.
    kubeflow_job : with ``workers``, on Kubernetes: run the workers as a Kubeflow Training Operator
        PyTorchJob (Master + N-1 Workers) instead of N pods and a headless Service; the cluster needs
        the operator's CRD (the step fails saying so otherwise). Other executors ignore it.
    """
    opts = make_options(base_image=base_image, packages=packages, resources=resources, retries=retries,
                        backoff=backoff, timeout=timeout, cache=cache,
                        max_cache_staleness=max_cache_staleness, env=env, workers=workers, kubeflow_job=kubeflow_job,
                        owner=f"component {name or ''}".strip())

    def wrap(f: Callable[..., Any]) -> Component:
        return Component(f, name=name, options=opts)

    return wrap(func) if func is not None else wrap
