"""Turn an nbpipe package into Kubeflow Pipelines v2 pipeline YAML (the compiled PipelineSpec IR).

The output has the shape ``kfp.compiler`` writes: ``pipelineInfo``, ``root`` (the DAG of tasks
and the pipeline's ``inputDefinitions``), ``components`` (``inputDefinitions`` /
``outputDefinitions``), ``deploymentSpec.executors`` and ``schemaVersion: 2.1.0``. Each executor
is a KFP lightweight Python component: the container command writes a small program and runs
it with ``kfp.dsl.executor_main``; the program is the bootstrap
(:mod:`nbpipe.export._kfp_bootstrap`), the component's cloudpickle payload in base64, and a
generated wrapper whose KFP-typed signature tells KFP's executor what to read and write.
So each step runs the same captured function as under nbpipe, on the component's image.

Mapping: str/int/float/bool/list/dict → STRING/NUMBER_INTEGER/NUMBER_DOUBLE/BOOLEAN/LIST/STRUCT
parameters; ``Input``/``Output[Dataset|Model|...]`` → ``system.*`` artifacts; other return
values (numpy arrays, DataFrames, any object) → pickled ``system.Artifact`` files; resources,
retries, caching, display names, ``.after()`` and env map to their KFP fields.
Not mapped (see ``docs/export.md``): timeouts, cache staleness, ``max_backoff`` beyond KFP's cap.

Non-goals: importing or requiring ``kfp`` here (only PyYAML); compiling arbitrary KFP features.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from pathlib import Path
from typing import Any

from ..package import Package, read_package
from ..signature import base_type
from .errors import ExportError
from .kfp_flow import Layout
from .kfp_image import IMAGE_ENV, check_image, is_default_image

SCHEMA_VERSION = "2.1.0"
KFP_REQUIREMENT = "kfp>=2,<3"
PARAMETER_TYPES = {"str": "STRING", "int": "NUMBER_INTEGER", "float": "NUMBER_DOUBLE", "bool": "BOOLEAN",
                   "list": "LIST", "dict": "STRUCT"}
_PY_OF = {v: k for k, v in PARAMETER_TYPES.items()}
# Checks for installed modules without importing them (importing kfp takes seconds).
_HAS = "import sys, importlib.util as u; sys.exit(not all(u.find_spec(m) for m in sys.argv[1:]))"
_INSTALL = """
NBPIPE_HAS='""" + _HAS + """'
if ! python3 -c "$NBPIPE_HAS" kfp cloudpickle >/dev/null 2>&1; then
  PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet --no-warn-script-location {base}
fi
{packages}"$0" "$@"
"""
_PROGRAM = """program_path=$(mktemp -d)
printf "%s" "$0" > "$program_path/ephemeral_component.py"
_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main --component_module_path "$program_path/ephemeral_component.py" "$@"
"""


def _name(raw: str) -> str:
    """KFP's sanitized names: lower case, runs of other characters as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-") or "x"


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\"'\"'") + "'"


def _gb(memory: str) -> float:
    units = {"": 1, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", memory)
    assert m is not None  # Resources validated it
    return float(m.group(1)) * units[m.group(2)] / 1e9


def _cpu(cpu: str) -> float:
    return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def _seconds(value: float) -> str:
    return f"{value:g}s"


class _Mapper:
    """Holds the package and decides, per component input/output, parameter or artifact."""

    def __init__(self, pkg: Package) -> None:
        self.pkg = pkg
        self.spec = pkg.spec
        self.params = {p["name"]: p for p in self.spec["pipeline"]["parameters"]}
        self.comp_of = {s["name"]: self.spec["components"][s["component"]] for s in self.spec["steps"]}

    # -- values
    def output_how(self, out: dict[str, Any]) -> str:
        """``artifact:<Type>`` (Output[...] argument), a parameter type name, or ``pickle``."""
        if out["kind"] == "artifact":
            return f"artifact:{out['artifact_type']}"
        t = base_type(out["type"])
        return t if t in PARAMETER_TYPES else "pickle"

    def input_how(self, comp_key: str, inp: dict[str, Any]) -> str:
        """A parameter type name, ``artifact:<Type>``, ``pickle``, ``status`` (RUN_STATUS) or
        ``list:<how>`` (a Collected list of artifacts or pickled values)."""
        if inp["kind"] == "artifact":
            return f"artifact:{inp['artifact_type']}"
        bindings = [s["inputs"][inp["name"]] for s in self.spec["steps"]
                    if s["component"] == comp_key and inp["name"] in s["inputs"]]
        hows = {self._binding_how(b) for b in bindings if "collect" in b or b.get("placeholder") == "run_status"}
        t = base_type(inp["type"])
        if not hows and t in PARAMETER_TYPES:
            return t
        if not hows:
            hows = {self._binding_how(b) for b in bindings}
        if not hows and inp.get("default") is not None:
            hows.add(_json_type(inp["default"]))
        hows = {"pickle" if h not in PARAMETER_TYPES and ":" not in h and h != "status" else h for h in hows} \
            or {"pickle"}
        if len(hows) > 1:
            raise ExportError(
                f"Input '{inp['name']}' of component '{comp_key}' has no single KFP type",
                f"Steps feed it {' and '.join(sorted(hows))} values; KFP fixes each input as one parameter "
                "type or an artifact.", f"Annotate '{inp['name']}' with a concrete type.")
        return hows.pop()

    def _binding_how(self, b: dict[str, Any]) -> str:
        if "collect" in b:
            c = b["collect"]
            up = next(o for o in self.comp_of[c["step"]]["outputs"] if o["name"] == c["output"])
            how = self.output_how(up)
            return "list" if how in PARAMETER_TYPES else f"list:{how}"
        if "step" in b:
            up = next(o for o in self.comp_of[b["step"]]["outputs"] if o["name"] == b["output"])
            return self.output_how(up)
        if "parameter" in b:
            return base_type(self.params[b["parameter"]]["type"])
        if "placeholder" in b:
            return "status" if b["placeholder"] == "run_status" else "str"
        if "loop" in b:
            group = next(g for g in self.spec.get("groups", []) if g["id"] == b["loop"])
            kinds = {_json_type(v) for v in group["items"].get("value", [None])} if not b.get("field") else set()
            if len(kinds) == 1 and kinds <= set(PARAMETER_TYPES):
                return kinds.pop()
            raise ExportError(f"A step input fed loop items of '{b['loop']}' has no annotated type",
                              "KFP fixes each input's parameter type; the loop's items have no single known type.",
                              "Annotate the component argument (str, int, float, bool, list or dict).")
        return _json_type(b["value"])

    def parameter_definition(self, p: dict[str, Any]) -> dict[str, Any]:
        """The KFP ``inputDefinitions`` entry of a pipeline parameter."""
        t = base_type(p["type"])
        if t == "any":
            t = _json_type(p.get("default"))
        if t not in PARAMETER_TYPES:
            raise ExportError(f"Pipeline parameter '{p['name']}' has type {p['type']}, which KFP cannot pass",
                              hint="Use str, int, float, bool, list or dict for pipeline parameters.")
        d: dict[str, Any] = {"parameterType": PARAMETER_TYPES[t]}
        if "default" in p:
            d["isOptional"] = True
            if p["default"] is not None:
                d["defaultValue"] = p["default"]
        return d

    # -- definitions
    def definitions(self, comp_key: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(inputDefinitions, outputDefinitions, bootstrap step spec) of a component."""
        comp = self.spec["components"][comp_key]
        ins: dict[str, Any] = {}
        outs: dict[str, Any] = {}
        step: dict[str, Any] = {"name": comp["name"], "serializer": comp["payload"]["serializer"],
                                "return_style": comp["return_style"], "inputs": {}, "artifacts_out": {},
                                "returns": []}
        for inp in comp["inputs"]:
            how = self.input_how(comp_key, inp)
            step["inputs"][inp["name"]] = how
            if how == "status":
                ins.setdefault("parameters", {})[inp["name"]] = {"parameterType": "TASK_FINAL_STATUS",
                                                                 "isOptional": True}
            elif how.startswith("list:"):
                ins.setdefault("artifacts", {})[inp["name"]] = {**_artifact_type(how[5:]), "isArtifactList": True}
            elif how in PARAMETER_TYPES:
                d: dict[str, Any] = {"parameterType": PARAMETER_TYPES[how]}
                if "default" in inp or inp.get("optional"):
                    d["isOptional"] = True
                if inp.get("default") is not None:
                    d["defaultValue"] = inp["default"]
                ins.setdefault("parameters", {})[inp["name"]] = d
            else:
                ins.setdefault("artifacts", {})[inp["name"]] = _artifact_type(how)
        for out in comp["outputs"]:
            how = self.output_how(out)
            if out["kind"] == "artifact":
                step["artifacts_out"][out["name"]] = out["artifact_type"]
            else:
                step["returns"].append((out["name"], how))
            if how in PARAMETER_TYPES:
                outs.setdefault("parameters", {})[out["name"]] = {"parameterType": PARAMETER_TYPES[how]}
            else:
                outs.setdefault("artifacts", {})[out["name"]] = _artifact_type(how)
        return ins, outs, step


def _json_type(value: Any) -> str:
    for py, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(value, py):
            return name
    return "pickle"


def _artifact_type(how: str) -> dict[str, Any]:
    kind = how.split(":", 1)[1] if how.startswith("artifact:") else "Artifact"
    return {"artifactType": {"schemaTitle": f"system.{kind}", "schemaVersion": "0.0.1"}}


def _wrapper(func: str, ins: dict[str, Any], outs: dict[str, Any], step: dict[str, Any]) -> str:
    """A KFP-typed function whose signature tells KFP's executor what to pass and collect."""
    required, optional = [], []
    for name, how in step["inputs"].items():
        param = ins.get("parameters", {}).get(name)
        if how == "status":
            required.append(f"{name}: PipelineTaskFinalStatus")
        elif how.startswith("list:"):
            required.append(f"{name}: Input[List[{how.split(':')[-1] if how.count(':') > 1 else 'Artifact'}]]")
        elif param is None:
            required.append(f"{name}: Input[{how.split(':', 1)[1] if ':' in how else 'Artifact'}]")
        elif param.get("isOptional"):
            optional.append(f"{name}: Optional[{how}] = {param.get('defaultValue')!r}")
        else:
            required.append(f"{name}: {how}")
    for name, art in outs.get("artifacts", {}).items():
        required.append(f"{name}: Output[{art['artifactType']['schemaTitle'].split('.', 1)[1]}]")
    fields = [(n, _PY_OF[d["parameterType"]]) for n, d in outs.get("parameters", {}).items()]
    order = [n for n, how in step["returns"] if how != "pickle"]
    fields.sort(key=lambda f: order.index(f[0]))
    ret = f" -> NamedTuple('Outputs', [{', '.join(f'({n!r}, {t})' for n, t in fields)}])" if fields else ""
    return (f"def {func}({', '.join(required + optional)}){ret}:\n"
            f"    return _nbpipe_call(_NBPIPE_STEP, _NBPIPE_PAYLOAD, dict(locals()))\n")


def _installed(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _executor(pkg: Package, comp: dict[str, Any], options: dict[str, Any], func: str, program: str,
              image: str | None = None) -> dict[str, Any]:
    # The payload loads with the cloudpickle that made it; dill as installed here (both locked in
    # requirements.lock, like the base image's; tests/test_reproducible.py checks they agree).
    base = [KFP_REQUIREMENT, f"cloudpickle=={comp.get('cloudpickle') or _installed('cloudpickle')}"]
    if comp["payload"]["serializer"] == "dill":
        base.append(f"dill=={_installed('dill')}")
    packages = options.get("packages") or []
    pip = ("PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet --no-warn-script-location "
           + " ".join(_quote(p) for p in packages) + " && ") if packages else ""
    install = _INSTALL.format(base=" ".join(_quote(b) for b in base), packages=pip)
    container: dict[str, Any] = {
        "image": image if image and is_default_image(comp) else comp["image"],
        "command": ["sh", "-c", install, "sh", "-ec", _PROGRAM, program],
        "args": ["--executor_input", "{{$}}", "--function_to_execute", func],
    }
    res = options.get("resources") or {}
    resources: dict[str, Any] = {}
    if res.get("cpu"):
        resources.update(cpuLimit=_cpu(res["cpu"]), resourceCpuLimit=res["cpu"],
                         cpuRequest=_cpu(res["cpu"]), resourceCpuRequest=res["cpu"])
    if res.get("memory"):
        resources.update(memoryLimit=_gb(res["memory"]), resourceMemoryLimit=res["memory"],
                         memoryRequest=_gb(res["memory"]), resourceMemoryRequest=res["memory"])
    if res.get("gpu"):
        count = str(res["gpu"])
        resources["accelerator"] = {"count": count, "resourceCount": count, "type": "nvidia.com/gpu",
                                    "resourceType": "nvidia.com/gpu"}
    if resources:
        container["resources"] = resources
    if options.get("env"):
        container["env"] = [{"name": k, "value": v} for k, v in sorted(options["env"].items())]
    return {"container": container}


def _bootstrap_source() -> str:
    src = Path(__file__).with_name("_kfp_bootstrap.py").read_text(encoding="utf-8")
    return src.replace("from __future__ import annotations\n", "")


def _program(pkg: Package, comp: dict[str, Any], func: str, wrapper: str, step: dict[str, Any]) -> str:
    payload = base64.b64encode(pkg.payloads[comp["payload"]["digest"]]).decode("ascii")
    return ("import kfp\nfrom kfp import dsl\nfrom kfp.dsl import *\nfrom typing import *\n"
            + _bootstrap_source()
            + f"\n_NBPIPE_STEP = {json.dumps(step, sort_keys=True)!r}\n"
            + "_NBPIPE_STEP = __import__('json').loads(_NBPIPE_STEP)\n"
            + f"_NBPIPE_PAYLOAD = {payload!r}\n\n" + wrapper)


def package_to_spec(source: bytes | str | os.PathLike[str] | Package, image: str | None = None) -> dict[str, Any]:
    """The KFP PipelineSpec (as a dict) for a package; :func:`package_to_kfp` writes it as YAML.

    ``image`` replaces nbpipe's default step image (``nbpipe/base:pyX.Y``) of every component
    that did not choose its own (``component(base_image=...)``)."""
    from .. import __version__

    pkg = source if isinstance(source, Package) else read_package(source)
    mapper = _Mapper(pkg)
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    exec_key: dict[str, dict[str, Any]] = {}  # json(component key + executor options) -> component entry
    task_of = {s["name"]: _name(s["name"]) for s in pkg.spec["steps"]}
    if len(set(task_of.values())) < len(task_of):
        raise ExportError("Two step names become the same KFP task name",
                          f"KFP lower-cases names and turns '_' into '-': {sorted(task_of)}.",
                          "Give the components names that differ in more than case and '_'/'-'.")

    def task_for(s: dict[str, Any]) -> dict[str, Any]:
        key = s["component"]
        comp = pkg.spec["components"][key]
        opts = s["options"]
        ident = json.dumps([key, opts.get("packages"), opts.get("resources"), opts.get("env")], sort_keys=True)
        if ident not in exec_key:  # steps of one component with the same options share an executor
            base, n = _name(key), 2
            name = base
            while f"exec-{name}" in executors:
                name, n = f"{base}-{n}", n + 1
            ins, outs, step = mapper.definitions(key)
            func = re.sub(r"\W", "_", comp["name"])
            program = _program(pkg, comp, func, _wrapper(func, ins, outs, step), step)
            entry: dict[str, Any] = {"executorLabel": f"exec-{name}"}
            if ins:
                entry["inputDefinitions"] = ins
            if outs:
                entry["outputDefinitions"] = outs
            exec_key[ident] = entry
            executors[f"exec-{name}"] = _executor(pkg, comp, opts, func, program, image)
        # One component per task, as kfp.compiler writes (kfp.local names task folders after it).
        name = task_of[s["name"]]
        components[f"comp-{name}"] = copy.deepcopy(exec_key[ident])  # no YAML anchors
        task: dict[str, Any] = {
            "cachingOptions": {"enableCache": True} if opts["cache"] else {},
            "componentRef": {"name": f"comp-{name}"},
            "taskInfo": {"name": s.get("display_name") or task_of[s["name"]]},
        }
        if opts["retries"]:
            task["retryPolicy"] = {"maxRetryCount": opts["retries"], "backoffDuration": _seconds(opts["backoff"]),
                                   "backoffFactor": float(opts["backoff_factor"]),
                                   "backoffMaxDuration": _seconds(opts["max_backoff"])}
        return task

    layout = Layout(mapper, task_of, task_for)
    clash = sorted(set(components) & {f"comp-{g}" for g in layout.kinds})
    if clash:
        raise ExportError(f"Component '{clash[0][5:]}' has the name KFP gives a control-flow group",
                          hint="Rename the component so it does not look like 'for-loop-N' or 'condition-N'.")
    components.update(layout.components())
    root: dict[str, Any] = {"dag": layout.dags[""]}
    params = {p["name"]: mapper.parameter_definition(p) for p in pkg.parameters}
    if params:
        root["inputDefinitions"] = {"parameters": params}
    info = {"name": _name(pkg.name)}
    if pkg.spec["pipeline"].get("description"):
        info["description"] = pkg.spec["pipeline"]["description"]
    return {"components": components, "deploymentSpec": {"executors": executors}, "pipelineInfo": info,
            "root": root, "schemaVersion": SCHEMA_VERSION, "sdkVersion": f"nbpipe-{__version__}"}


def package_to_kfp(source: bytes | str | os.PathLike[str] | Package, image: str | None = None) -> str:
    """Kubeflow Pipelines v2 YAML for a package (bytes, path or :class:`~nbpipe.package.Package`).

    ``image``: the step image to reference instead of nbpipe's default ``nbpipe/base:pyX.Y``
    (default: ``$NBPIPE_KFP_IMAGE``; see :mod:`nbpipe.export.kfp_image` for how to build and push it).

    Raises
    ------
    ExportError
        Something in the package has no KFP equivalent (the message says what).
    nbpipe.errors.PackageError
        The package is not valid.
    """
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML comes with jupyter_server
        raise ExportError("Writing KFP YAML needs PyYAML", hint="pip install pyyaml") from None
    pkg = source if isinstance(source, Package) else read_package(source)
    spec = package_to_spec(pkg, check_image(image or os.environ.get(IMAGE_ENV) or None))
    header = (f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
              f"# Exported by nbpipe from package sha256:{pkg.digest}\n")
    return header + yaml.safe_dump(spec, sort_keys=True, allow_unicode=True)
