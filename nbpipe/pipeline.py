"""``@pipeline``: calling components inside a function records steps and edges (the DAG).

The pipeline function runs once, at definition time, with placeholders for its parameters;
every component call becomes a :class:`Step`. Mistakes (unknown or missing inputs, type
mismatches, cycles) raise :class:`~nbpipe.errors.DefinitionError` right there.

At submit time :meth:`Pipeline.capture` resolves each component to its current definition (a
component redefined in the notebook since the pipeline was traced is used in its new form; the
pipeline is re-traced with it) and captures each one afresh, with the globals it uses *now*.

Non-goals: executing anything (see :mod:`nbpipe.client`) or serializing (see :mod:`nbpipe.package`).
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from dataclasses import replace
from typing import Any, Callable, Iterator

from .capture_checks import check_defined
from .compiler import compile_pipeline
from .component import Capture, Component, Options, make_options
from .condition import Comparable, check_constant, no_step_arithmetic
from .errors import DefinitionAttributeError, DefinitionError, cell_label
from .signature import InputSpec, compatible, is_json_value, type_name, value_matches
from .tracing import _TRACE, check_reference, current_trace

__all__ = ["Pipeline", "PipelineParam", "Step", "StepOutput", "Trace", "current_definition", "current_trace",
           "kernel_pipeline", "pipeline"]


class PipelineParam(Comparable):
    """Placeholder for a pipeline parameter while the pipeline is traced (compare it for nbpipe.If)."""

    def __init__(self, name: str, type: str, default: Any = None, has_default: bool = False):
        self.name, self.type, self.default, self.has_default = name, type, default, has_default

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"Pipeline parameter '{self.name}' has no value while the pipeline is being defined",
            "Python 'if'/'and'/'or' on it cannot decide anything yet.",
            "Pass it to a component and branch there, or use nbpipe.If(...) for a condition.",
        )

    def __repr__(self) -> str:
        return f"<pipeline parameter {self.name}: {self.type}>"

    def _nbpipe_what(self) -> str:
        return f"Pipeline parameter '{self.name}'"

    def __iter__(self) -> Iterator[Any]:
        raise DefinitionError(
            f"Pipeline parameter '{self.name}' has no value while the pipeline is being defined, so a "
            "Python for-loop cannot go over it",
            hint=f"Fan out with `with nbpipe.ParallelFor({self.name}) as item:`, or loop inside a component.",
        )

    def __nbpipe_operand__(self, where: str = "") -> dict[str, Any]:
        return {"parameter": self.name}


class StepOutput(Comparable):
    """One output of a step, passed to a later step's input (compare it for nbpipe.If)."""

    def __init__(self, step: "Step", name: str, type: str, kind: str, artifact_type: str = ""):
        self.step, self.name, self.type, self.kind, self.artifact_type = step, name, type, kind, artifact_type

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"Output '{self.name}' of step '{self.step.name}' has no value while the pipeline is being defined",
            hint="Pass it to a component and decide there, or use nbpipe.If(...) for a condition.",
        )

    def __repr__(self) -> str:
        return f"<output {self.step.name}.{self.name}: {self.type}>"

    def _nbpipe_what(self) -> str:
        return f"Output '{self.name}' of step '{self.step.name}'"

    def _nbpipe_ref(self) -> str:
        return f"{self.step.name}.outputs[{self.name!r}]"

    def __nbpipe_operand__(self, where: str = "") -> dict[str, Any]:
        if self.kind == "artifact":
            raise DefinitionError(f"{where}: output '{self.step.name}.{self.name}' is an artifact (a file)",
                                  hint="Compare a value output; return e.g. the metric from the component.")
        return {"step": self.step.name, "output": self.name}


class Outputs:
    """``step.outputs['x']`` or ``step.outputs.x``."""

    def __init__(self, step: "Step"):
        self._step = step

    def __getitem__(self, name: str) -> StepOutput:
        for o in self._step.component.outputs:
            if o.name == name:
                return StepOutput(self._step, o.name, o.type, o.kind, o.artifact_type)
        names = ", ".join(o.name for o in self._step.component.outputs) or "none"
        raise DefinitionError(f"Step '{self._step.name}' has no output '{name}'", f"Its outputs are: {names}.")

    def __getattr__(self, name: str) -> StepOutput:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __iter__(self) -> Iterator[str]:
        return iter(o.name for o in self._step.component.outputs)

    def __len__(self) -> int:
        return len(self._step.component.outputs)

    def keys(self) -> list[str]:
        return list(self)


def _a(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


@no_step_arithmetic
class Step:
    """A component placed in a pipeline: its input bindings, ordering and option overrides."""

    def __init__(self, trace: "Trace", name: str, component: Component, inputs: dict[str, dict[str, Any]]):
        self.trace = trace
        self.name = name
        self.component = component
        self.inputs = inputs
        self.after_steps: list[str] = []
        self.display_name = ""
        self.options: Options = component.options
        self.group: str = ""

    # -- outputs
    @property
    def outputs(self) -> Outputs:
        return Outputs(self)

    @property
    def output(self) -> StepOutput:
        outs = self.component.outputs
        if len(outs) != 1:
            names = ", ".join(o.name for o in outs) or "no outputs"
            raise DefinitionError(
                f"Step '{self.name}' has {len(outs)} outputs ({names}), so '.output' is ambiguous",
                hint=f"Use {self.name}.outputs['<name>'] or unpack: a, b = {self.component.name}(...).",
            )
        return self.outputs[outs[0].name]

    def __iter__(self) -> Iterator[StepOutput]:
        return (self.outputs[o.name] for o in self.component.outputs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        import difflib

        known = [n for n in dir(type(self)) if not n.startswith("_")]
        outs = [o.name for o in self.component.outputs]
        close = difflib.get_close_matches(name, known, n=1)
        if name in outs:
            hint = f"Use {self.name}.outputs[{name!r}] (or .output when the step has one output)."
        elif close:
            hint = f"Did you mean .{close[0]}?"
        else:
            hint = f"Its outputs: {', '.join(f'.outputs[{o!r}]' for o in outs) or 'none'}; options: .after(), " \
                   ".set_retries(), .set_timeout(), .set_caching(), .set_resources(), .set_env(), .set_display_name()."
        raise DefinitionAttributeError(f"Step '{self.name}' has no attribute '{name}'", hint=hint)

    def __getitem__(self, key: Any) -> StepOutput:
        if isinstance(key, str):
            return self.outputs[key]
        raise DefinitionError(f"Step '{self.name}'[{key!r}]: index a step by output name",
                              hint=f"Use {self.name}.outputs['<name>'] or .output.")

    def __bool__(self) -> bool:
        return True

    def __nbpipe_operand__(self, where: str = "") -> dict[str, Any]:
        return self.output.__nbpipe_operand__(where)

    def _nbpipe_what(self) -> str:
        return f"Step '{self.name}'"

    # -- fluent options (Kubeflow-style task methods)
    def after(self, *steps: "Step") -> "Step":
        for s in steps:
            if not isinstance(s, Step):
                raise DefinitionError(f"Step '{self.name}'.after() takes steps, got {type(s).__name__}")
            if s.name == self.name:
                raise DefinitionError(f"Step '{self.name}' cannot run after itself")
            if s.name not in self.after_steps:
                self.after_steps.append(s.name)
        return self

    def set_display_name(self, name: str) -> "Step":
        self.display_name = str(name)
        return self

    def set_retries(self, retries: int, backoff: Any = None) -> "Step":
        self.options = make_options(retries=retries, backoff=backoff, base=self.options, owner=f"step {self.name}")
        return self

    def set_timeout(self, timeout: Any) -> "Step":
        self.options = make_options(timeout=timeout, base=self.options, owner=f"step {self.name}")
        return self

    def set_caching(self, enabled: bool = True, max_staleness: Any = None) -> "Step":
        self.options = make_options(cache=enabled, max_cache_staleness=max_staleness, base=self.options,
                                    owner=f"step {self.name}")
        return self

    set_caching_options = set_caching

    def set_resources(self, cpu: Any = None, memory: Any = None, gpu: int | None = None) -> "Step":
        self.options = make_options(cpu=cpu, memory=memory, gpu=gpu, base=self.options, owner=f"step {self.name}")
        return self

    def set_env(self, **env: str) -> "Step":
        merged = dict(self.options.env) | {k: str(v) for k, v in env.items()}
        self.options = replace(self.options, env=tuple(sorted(merged.items())))
        return self

    def __repr__(self) -> str:
        return f"<step {self.name} ({self.component.name})>"


class Trace:
    """Collects steps while a pipeline function runs."""

    def __init__(self, pipeline_name: str, resolve: Callable[[Component], Component] | None = None):
        self.pipeline_name = pipeline_name
        self.resolve = resolve  # maps each component called to the one to use (its newest definition)
        self.steps: dict[str, Step] = {}
        self.params: dict[str, PipelineParam] = {}
        self.groups: dict[str, dict[str, Any]] = {}  # control-flow groups (nbpipe.control)
        self.group_stack: list[str] = []
        self.last_branch: Any = None
        self.prefix = ""  # name prefix of an inlined sub-pipeline's steps
        self._counts: dict[str, int] = {}

    def _step_name(self, base: str) -> str:
        base = self.prefix + base
        # A counter per base name keeps this O(1); tracing a 500-way fan-out stays linear.
        n = self._counts.get(base, 1)
        name = base if n == 1 else f"{base}-{n}"
        while name in self.steps:
            n += 1
            name = f"{base}-{n}"
        self._counts[base] = n + 1
        return name

    def add_step(self, comp: Component, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Step:
        if self.resolve is not None:
            comp = self.resolve(comp)
        name = self._step_name(comp.name)
        sig = comp.signature
        try:
            bound = sig.bind_partial(*args, **kwargs)
        except TypeError as exc:
            valid = ", ".join(i.name for i in comp.inputs) or "none"
            unknown = [k for k in kwargs if k not in sig.parameters]
            what = f"has no input '{unknown[0]}'" if unknown else f"was called wrongly ({exc})"
            raise DefinitionError(f"Step '{name}': component '{comp.name}' {what}",
                                  f"Its inputs are: {valid}.", "Fix the argument name.") from None
        inputs: dict[str, dict[str, Any]] = {}
        out_names = {o.name for o in comp.outputs if o.kind == "artifact"}
        for arg, value in bound.arguments.items():
            if arg in out_names:
                raise DefinitionError(
                    f"Step '{name}': '{arg}' is an Output[...] of component '{comp.name}'",
                    "nbpipe gives each step a fresh path to write it to.",
                    f"Don't pass '{arg}'; read it downstream as {name}.outputs['{arg}'].",
                )
            spec = comp.input(arg)
            assert spec is not None
            inputs[arg] = self._bind(name, comp, spec, value)
        for spec in comp.inputs:
            if spec.name not in inputs and not spec.has_default:
                raise DefinitionError(
                    f"Step '{name}' needs input '{spec.name}' ({spec.type}), but none was given",
                    hint=f"Pass {spec.name}=... : an upstream step's output or a pipeline parameter.",
                )
        step = Step(self, name, comp, inputs)
        step.group = self.group_stack[-1] if self.group_stack else ""
        self.steps[name] = step
        return step

    def _bind(self, step: str, comp: Component, spec: InputSpec, value: Any) -> dict[str, Any]:
        where = f"Step '{step}' input '{spec.name}'"
        hook = getattr(value, "__nbpipe_binding__", None)
        if hook is not None:  # loop items, Collected, RUN_ID… (nbpipe.control)
            return dict(hook(self, where, spec))
        if isinstance(value, Step):
            if value.trace is not self:
                raise DefinitionError(f"{where} uses step '{value.name}' from another pipeline")
            value = value.output
        if isinstance(value, StepOutput):
            if value.step.trace is not self:
                raise DefinitionError(f"{where} uses an output of another pipeline's step '{value.step.name}'")
            if self.groups:
                check_reference(self, value.step.name, self.group_stack[-1] if self.group_stack else "", where)
            if spec.kind == "artifact" and value.kind != "artifact":
                raise DefinitionError(
                    f"{where} is an Input[{spec.artifact_type}] artifact, but '{value.step.name}.{value.name}' "
                    f"is a plain value ({value.type})",
                    hint=f"Make '{value.step.component.name}' write an Output[{spec.artifact_type}], "
                    f"or annotate '{spec.name}' with the value's type.",
                )
            if spec.kind != "artifact" and value.kind == "artifact":
                raise DefinitionError(
                    f"{where} expects a value ({spec.type}), but '{value.step.name}.{value.name}' is an "
                    f"{value.artifact_type} artifact (a file)",
                    hint=f"Annotate it as {spec.name}: Input[{value.artifact_type}] and read {spec.name}.path.",
                )
            if spec.kind == "artifact":
                if spec.artifact_type not in ("Artifact", value.artifact_type) and value.artifact_type != "Artifact":
                    raise DefinitionError(
                        f"{where} expects Input[{spec.artifact_type}], but '{value.step.name}.{value.name}' "
                        f"is {value.artifact_type}",
                        hint="Change one of the annotations so they agree (Artifact accepts any).",
                    )
            elif not compatible(value.type, spec.type):
                raise DefinitionError(
                    f"{where} expects {spec.type}, but '{value.step.name}.{value.name}' is {value.type}",
                    hint=f"Change the annotation of '{spec.name}' or of '{value.step.component.name}''s output.",
                )
            return {"step": value.step.name, "output": value.name}
        if isinstance(value, PipelineParam):
            if spec.kind == "artifact":
                raise DefinitionError(f"{where} is an artifact; a pipeline parameter ('{value.name}') cannot feed it",
                                      hint="Load the data in a component that writes an Output[...].")
            if not compatible(value.type, spec.type):
                raise DefinitionError(
                    f"{where} expects {spec.type}, but pipeline parameter '{value.name}' is {value.type}",
                    hint=f"Annotate parameter '{value.name}' as {spec.type}, or convert inside the component.",
                )
            return {"parameter": value.name}
        if spec.kind == "artifact":
            raise DefinitionError(f"{where} is an Input[{spec.artifact_type}] and needs an upstream step's output",
                                  hint=f"Pass {spec.name}=<step>.outputs['<name>'].")
        check_constant(where, value)
        if not is_json_value(value):
            raise DefinitionError(
                f"{where} got {_a(type(value).__name__)} constant, which is not a plain JSON value",
                hint="Create the object inside a component, or pass it as a pipeline parameter of a JSON type.",
            )
        if not value_matches(value, spec.type):
            raise DefinitionError(f"{where} expects {spec.type}, got {value!r}",
                                  hint=f"Pass {_a(spec.type)} value.")
        return {"value": value}


class Pipeline:
    """A traced pipeline: parameters, steps (the DAG) and a name."""

    def __init__(self, func: Callable[..., Any], name: str | None = None, description: str | None = None):
        __tracebackhide__ = True  # noqa: F841 - IPython: the user sees their cell, not nbpipe's frames
        self.func = func
        self.name = name or func.__name__.replace("_", "-")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", self.name):
            raise DefinitionError(f"Pipeline name {self.name!r} is not valid",
                                  hint="Use letters, digits, '.', '_' and '-'.")
        self.description = description if description is not None else (inspect.getdoc(func) or "")
        self.__doc__ = func.__doc__
        self.__wrapped__ = func
        self.parameters = self._parameters()
        self.trace = self._trace()
        self.spec = compile_pipeline(self)  # validates: cycles, dangling references
        self._captured: tuple[Trace, tuple[Capture, ...], dict[str, Any]] | None = None

    def _parameters(self) -> list[dict[str, Any]]:
        params = []
        for p in inspect.signature(self.func).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise DefinitionError(f"Pipeline '{self.name}' takes *{p.name}", hint="Name each parameter.")
            tname = type_name(p.annotation)
            entry: dict[str, Any] = {"name": p.name, "type": tname}
            if p.default is not inspect.Parameter.empty:
                if not is_json_value(p.default):
                    raise DefinitionError(f"Pipeline '{self.name}' parameter '{p.name}' has a default that is not "
                                          "a plain JSON value", hint="Use str, int, float, bool, list or dict.")
                if not value_matches(p.default, tname):
                    raise DefinitionError(f"Pipeline '{self.name}' parameter '{p.name}' is {tname} but its "
                                          f"default is {p.default!r}")
                entry["default"] = p.default
            params.append(entry)
        return params

    def _trace(self, resolve: Callable[[Component], Component] | None = None) -> Trace:
        __tracebackhide__ = True  # noqa: F841
        trace = Trace(self.name, resolve)
        args = {}
        for p in self.parameters:
            ph = PipelineParam(p["name"], p["type"], p.get("default"), "default" in p)
            trace.params[p["name"]] = ph
            args[p["name"]] = ph
        token = _TRACE.set(trace)
        try:
            self.func(**args)
        finally:
            _TRACE.reset(token)
        if not trace.steps:
            raise DefinitionError(f"Pipeline '{self.name}' has no steps",
                                  hint="Call @component functions inside the pipeline function.")
        return trace

    @property
    def steps(self) -> dict[str, Step]:
        return self.trace.steps

    def capture(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The package spec and payloads of this pipeline as the kernel has it *now*.

        Each component is resolved to its current definition (see :func:`current_definition`)
        and pickled afresh with the globals and helpers it uses now, so the digests (cache keys)
        follow every change. Unchanged components cost one pickling each; the spec of an
        unchanged pipeline is reused.
        """
        __tracebackhide__ = True  # noqa: F841
        self._follow_redefinitions()
        trace = self.trace
        captures: dict[int, Capture] = {}
        for step in trace.steps.values():
            comp = step.component
            if id(comp) not in captures:
                captures[id(comp)] = capture = comp.capture()
                if getattr(comp, "_checked", None) is not capture:  # a new capture: what it reads may be gone
                    check_defined(comp.func, comp.name)
                    comp._checked = capture
        key = tuple(captures.values())
        last = self._captured
        if last is not None and last[0] is trace and len(last[1]) == len(key) and all(
                a is b for a, b in zip(last[1], key)):
            spec = last[2]
        else:
            spec = compile_pipeline(self, captures)
            self._captured = (trace, key, spec)
        return spec, {c.payload_digest: c.payload for c in key}

    def _follow_redefinitions(self) -> None:
        """Re-trace with the newest definitions if a component was redefined since tracing."""
        __tracebackhide__ = True  # noqa: F841
        comps = {id(s.component): s.component for s in self.steps.values()}.values()
        for comp in comps:
            why = _ambiguous(comp)
            if why:
                where = _cell_of(self.func)
                raise DefinitionError(
                    f"Pipeline '{self.name}' uses component '{comp.name}', but {why}",
                    hint=f"Re-run the cell that makes component '{comp.name}', then the cell that defines "
                         f"pipeline '{self.name}'" + (f" ({where})" if where else "") + ".",
                )
        stale = [c for c in comps if current_definition(c) is not c]
        if not stale:
            return
        try:
            trace = self._trace(current_definition)
            spec = compile_pipeline(self, None, trace)
        except DefinitionError as exc:
            where = _cell_of(self.func)
            raise DefinitionError(
                f"Component '{stale[0].name}' was redefined and pipeline '{self.name}' no longer fits it: "
                f"{exc.headline}",
                hint=f"Fix the call, then re-run the cell that defines pipeline '{self.name}'"
                     + (f" ({where})" if where else "") + ".",
            ) from None
        self.trace, self.spec = trace, spec

    def resolve_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check run parameters against the pipeline's and fill in defaults."""
        known = {p["name"]: p for p in self.parameters}
        return resolve_params(self.name, list(known.values()), params)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # noqa: F841
        trace = current_trace()
        if trace is not None:  # composition: inline this pipeline's steps into the one being traced
            return _inline(self, trace, args, kwargs)
        raise DefinitionError(
            f"Pipeline '{self.name}' is not called directly",
            hint=f"Run it with nbpipe.run({self.func.__name__}, param=value).",
        )

    def __repr__(self) -> str:
        return f"<nbpipe pipeline {self.name}: {len(self.steps)} steps>"


def kernel_pipeline(name: str) -> Pipeline | None:
    """The pipeline named ``name`` that the notebook kernel running this code defines now (the one
    :class:`Pipeline` of that name in IPython's user namespace), or None: outside a kernel, or with
    none or several of that name. Re-runs use it so they run the user's fix, as ``nbpipe.run`` does."""
    ipython = sys.modules.get("IPython")  # never imported here: only a kernel has it loaded
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    ns = getattr(shell, "user_ns", None)
    if not isinstance(ns, dict) or not name:
        return None
    found = {id(v): v for k, v in list(ns.items()) if not k.startswith("_") and isinstance(v, Pipeline) and v.name == name}
    return next(iter(found.values())) if len(found) == 1 else None


def current_definition(comp: Component) -> Component:
    """The newest definition of ``comp``: the component of the same name that its variable in the
    namespace it was defined in (a notebook's globals, a module) holds now, or ``comp`` itself."""
    ns = getattr(comp.func, "__globals__", None)
    if not isinstance(ns, dict) or "<locals>" in getattr(comp.func, "__qualname__", ""):
        return comp  # defined inside a function: its globals hold other things of the same name
    for var in dict.fromkeys((comp.variable, comp.name)):
        value = ns.get(var)
        if isinstance(value, Component) and value is not comp and value.name == comp.name:
            return value
    return comp


def _ambiguous(comp: Component) -> str:
    """Why the newest definition of ``comp`` cannot be told (its function was redefined without
    making the component again, or its variable now holds another component), or ""."""
    ns = getattr(comp.func, "__globals__", None)
    if not isinstance(ns, dict) or "<locals>" in getattr(comp.func, "__qualname__", ""):
        return ""
    value = ns.get(comp.variable)
    if isinstance(value, Component) and value is not comp and value.name != comp.name:
        return f"the notebook's '{comp.variable}' is now component '{value.name}'"
    func = comp.func
    if (isinstance(value, types.FunctionType) and value is not func and isinstance(func, types.FunctionType)
            and value.__qualname__ == func.__qualname__ and value.__module__ == func.__module__):
        return f"function '{comp.variable}' was redefined after the component was made from it"
    return ""


def _cell_of(func: Any) -> str:
    """Where ``func`` was defined, as the user knows it (``Cell In[7]``, a file), or ""."""
    code = getattr(func, "__code__", None)
    if code is None or code.co_filename.startswith("<nbpipe-"):
        return ""
    return cell_label(code.co_filename)


def _inline(inner: Pipeline, trace: Trace, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Trace ``inner`` into ``trace``: its steps get the prefix ``<inner name>-``, its parameters the arguments."""
    __tracebackhide__ = True  # noqa: F841
    try:
        bound = inspect.signature(inner.func).bind(*args, **kwargs)
    except TypeError as exc:
        names = ", ".join(p["name"] for p in inner.parameters) or "none"
        raise DefinitionError(f"Pipeline '{inner.name}' was called wrongly inside pipeline "
                              f"'{trace.pipeline_name}' ({exc})", f"Its parameters are: {names}.") from None
    bound.apply_defaults()
    prefix, trace.prefix = trace.prefix, f"{trace.prefix}{inner.name.replace('.', '-')}-"
    try:
        return inner.func(*bound.args, **bound.kwargs)
    finally:
        trace.prefix = prefix


def resolve_params(pipeline: str, parameters: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    known = {p["name"]: p for p in parameters}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise DefinitionError(f"Pipeline '{pipeline}' has no parameter {unknown[0]!r}",
                              f"Its parameters are: {', '.join(known) or 'none'}.")
    out: dict[str, Any] = {}
    for name, p in known.items():
        if name in params:
            value = params[name]
            if not is_json_value(value):
                raise DefinitionError(f"Parameter '{name}' of pipeline '{pipeline}' must be a plain JSON value, "
                                      f"got {type(value).__name__}")
            if not value_matches(value, p["type"]):
                raise DefinitionError(f"Parameter '{name}' of pipeline '{pipeline}' is {p['type']}, got {value!r}")
            if p["type"] in ("float", "Optional[float]") and isinstance(value, int):
                value = float(value)
            out[name] = value
        elif "default" in p:
            out[name] = p["default"]
        else:
            raise DefinitionError(f"Pipeline '{pipeline}' needs parameter '{name}' ({p['type']})",
                                  hint=f"Pass {name}=... when you run it.")
    return out


def pipeline(func: Callable[..., Any] | None = None, *, name: str | None = None,
             description: str | None = None) -> Any:
    """Trace ``func`` into a :class:`Pipeline`. Works bare or as ``@pipeline(name=...)``."""
    __tracebackhide__ = True  # noqa: F841

    def wrap(f: Callable[..., Any]) -> Pipeline:
        __tracebackhide__ = True  # noqa: F841
        return Pipeline(f, name=name, description=description)

    return wrap(func) if func is not None else wrap
