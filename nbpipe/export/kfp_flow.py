"""Lay an nbpipe package's steps and control-flow groups out as KFP v2 DAGs, as ``kfp.compiler`` does.

Each package group becomes a DAG component with a task in its parent DAG: a ``ParallelFor`` is
``for-loop-N`` (``parameterIterator`` over ``raw`` items or an ``inputParameter``,
``iteratorPolicy.parallelismLimit``), an ``If`` is ``condition-N`` with a CEL
``triggerPolicy.condition``, an ``If`` followed by ``Elif``/``Else`` sits with them in a
``condition-branches-N`` DAG, and an ``ExitHandler`` is ``exit-handler-N`` with the handler step
after it (``ALL_UPSTREAM_TASKS_COMPLETED``, ``RUN_STATUS`` as ``taskFinalStatus``). N counts groups
in definition order the way the KFP DSL does, so names match a KFP pipeline written the same way.
Values cross DAG borders as ``pipelinechannel--<name>`` inputs; ``Collected`` outputs leave loops
as DAG outputs (``valueFromParameter`` / ``artifactSelectors``).

Non-goals: deciding parameter vs artifact types (:mod:`nbpipe.export.kfp` does), executors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..compiler import upstream_of
from .errors import ExportError

if TYPE_CHECKING:
    from .kfp import _Mapper

PREFIX = "pipelinechannel--"
RUNTIME = {"run_id": "{{$.pipeline_job_uuid}}", "run_name": "{{$.pipeline_job_name}}"}
_CEL_OPS = {"==", "!=", "<", "<=", ">", ">="}


class Channel:
    """A value that may cross DAG borders: where it is made (``origin`` DAG) and how it is read there."""

    def __init__(self, name: str, origin: str, here: dict[str, Any], definition: dict[str, Any],
                 artifact: bool = False, kind: str = "any") -> None:
        self.name, self.origin, self.here, self.definition = name, origin, here, definition
        self.artifact, self.kind = artifact, kind  # kind: a parameter type name or "any" (for CEL)


class Layout:
    """Tasks of every DAG (``""`` is the root) and the DAG components of the groups."""

    def __init__(self, mapper: _Mapper, task_of: dict[str, str],
                 task_for: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.m, self.task_of = mapper, task_of
        spec = mapper.spec
        self.steps = {s["name"]: s for s in spec["steps"]}
        self.groups = {g["id"]: g for g in spec.get("groups", [])}
        self.kfp: dict[str, str] = {}  # package group id -> KFP group name
        self.item: dict[str, str] = {}  # loop group id -> raw item input name (loop-item-param-N)
        self.parent: dict[str, str] = {}  # task name (step or group) -> DAG it is in
        self.branches: dict[str, str] = {}  # if-group id -> its condition-branches group
        self._name_groups()
        for s in spec["steps"]:
            self.parent[task_of[s["name"]]] = self._dag_of(s.get("group", ""))
        clash = sorted(set(task_of.values()) & set(self.kinds))
        if clash:
            raise ExportError(f"Step '{clash[0]}' has the name KFP gives a control-flow group",
                              hint="Rename the component (or set a different step name) so it does not look like "
                                   "'for-loop-N', 'condition-N' or 'exit-handler-N'.")
        self.dags: dict[str, dict[str, Any]] = {"": {"tasks": {}}}
        self.inputs: dict[str, dict[str, Any]] = {}  # DAG -> inputDefinitions (parameters/artifacts)
        self.outputs: dict[str, dict[str, Any]] = {}  # DAG -> outputDefinitions
        self.channels: dict[str, Channel] = {}  # loop group name -> its item channel
        for name in self.kinds:
            self.dags[name] = {"tasks": {}}
            self.inputs[name] = {}
        for name in self.kinds:
            self.dags[self.parent[name]]["tasks"][name] = {"componentRef": {"name": f"comp-{name}"},
                                                           "taskInfo": {"name": name}}
        self._deps: dict[str, set[str]] = {}
        self._dependencies()
        for gid, g in self.groups.items():
            if g["kind"] == "for":
                self._loop(gid, g)
            elif g["kind"] == "condition":
                self._condition(gid, g)
        for s in spec["steps"]:
            name = task_of[s["name"]]
            task = task_for(s)
            self._inputs(s, task)
            self.dags[self.parent[name]]["tasks"][name] = task
        for name, deps in self._deps.items():
            task = self.dags[self.parent[name]]["tasks"][name]
            task["dependentTasks"] = sorted(deps | set(task.get("dependentTasks", [])))
        self._exit_handlers()

    # ------------------------------------------------------------ names and nesting
    def _name_groups(self) -> None:
        """KFP's group names: one counter in definition order (kfp.dsl.tasks_group)."""
        n = 0
        self.kinds: dict[str, str] = {}
        open_if: dict[str, str] = {}  # parent id -> last If/Elif group id there
        for gid, g in self.groups.items():
            if g["kind"] == "for":
                if "value" in g["items"]:
                    n += 1
                    self.item[gid] = f"{PREFIX}loop-item-param-{n}"
                n += 1
                self.kfp[gid] = f"for-loop-{n}"
            elif g["kind"] == "exit":
                n += 1
                self.kfp[gid] = f"exit-handler-{n}"
            elif g.get("branch", "if") == "if":
                n += 1
                self.kfp[gid] = f"condition-{n}"
                open_if[g["parent"]] = gid
            else:
                first = open_if.get(g["parent"])
                if first is None:
                    raise ExportError(f"Group '{gid}' ({g['branch']}) follows no If at the same level")
                if first not in self.branches:  # the If becomes condition-branches-N; it takes the next N
                    n += 1
                    wrapper = self.kfp[first].replace("condition-", "condition-branches-")
                    self.kfp[first] = f"condition-{n}"
                    self.branches[first] = wrapper
                self.branches[gid] = self.branches[first]
                n += 1
                self.kfp[gid] = f"condition-{n}"
        for gid, g in self.groups.items():
            name = self.kfp[gid]
            self.kinds[name] = g["kind"]
            wrapper = self.branches.get(gid)
            if wrapper:
                self.kinds[wrapper] = "branches"
                self.parent[wrapper] = self._dag_of(g["parent"])
                self.parent[name] = wrapper
            else:
                self.parent[name] = self._dag_of(g["parent"])

    def _chain(self, gid: str) -> list[str]:
        out = []
        while gid:
            out.append(gid)
            gid = self.groups[gid]["parent"]
        return out

    def _dag_of(self, gid: str) -> str:
        return self.kfp[gid] if gid else ""

    def ancestors(self, name: str) -> list[str]:
        """DAGs enclosing a task (root first), the task itself last."""
        out = [name]
        while out[-1]:
            out.append(self.parent[out[-1]])
        return list(reversed(out))

    # ------------------------------------------------------------ dependencies (kfp compiler_utils.get_dependencies)
    def _dependencies(self) -> None:
        for s in self.steps.values():
            me = self.task_of[s["name"]]
            for up in upstream_of(s):
                collected = any(b.get("collect", {}).get("step") == up for b in s["inputs"].values())
                self._depend(self.task_of[up], me, collected or up not in _data_sources(s), collected)

    def _depend(self, up: str, down: str, loose: bool, collected: bool = False) -> None:
        a, b = self.ancestors(up), self.ancestors(down)
        common = 0
        while common < min(len(a), len(b)) and a[common] == b[common]:
            common += 1
        ua, ub = a[common:], b[common:]
        for g in ua[:-1]:
            kind = self.kinds[g]
            if collected and kind != "for":
                raise ExportError(f"Step '{down}' collects outputs of step '{up}' through an If/Elif/Else or "
                                  "ExitHandler block",
                                  "KFP fans loop outputs in only straight out of dsl.ParallelFor groups "
                                  "(a skipped iteration leaves no value it could collect).",
                                  "Collect a step that runs in every iteration, e.g. one that returns None when "
                                  "the branch does not apply.")
            if kind in ("condition", "branches", "exit"):
                what = {"condition": "If/Elif/Else", "branches": "If/Elif/Else", "exit": "ExitHandler"}[kind]
                raise ExportError(
                    f"Step '{down}' depends on step '{up}' inside an nbpipe.{what.split('/')[0]} block it is not in",
                    f"KFP does not allow a task to depend on a task inside a dsl.{what.split('/')[0]} context "
                    "from outside it (nbpipe skips such steps when the branch did not run).",
                    "Move the dependent step into the same block, or compute the value outside the block.")
            if kind == "for" and not loose:
                raise ExportError(f"Step '{down}' reads step '{up}' inside a ParallelFor it is not in",
                                  hint="Wrap the output in nbpipe.Collected(...).")
        self._deps.setdefault(ub[0], set()).add(ua[0])

    # ------------------------------------------------------------ channels
    def _param(self, name: str) -> Channel:
        p = self.m.params[name]
        d = self.m.parameter_definition(p)
        return Channel(f"{PREFIX}{name}", "", {"componentInputParameter": name},
                       {"parameterType": d["parameterType"]}, kind=_kind(d["parameterType"]))

    def _output(self, step: str, output: str) -> Channel:
        task = self.task_of[step]
        out = next(o for o in self.m.comp_of[step]["outputs"] if o["name"] == output)
        how = self.m.output_how(out)
        from .kfp import PARAMETER_TYPES, _artifact_type

        if how in PARAMETER_TYPES:
            return Channel(f"{PREFIX}{task}-{output}", self.parent[task],
                           {"taskOutputParameter": {"producerTask": task, "outputParameterKey": output}},
                           {"parameterType": PARAMETER_TYPES[how]}, kind=how)
        return Channel(f"{PREFIX}{task}-{output}", self.parent[task],
                       {"taskOutputArtifact": {"producerTask": task, "outputArtifactKey": output}},
                       _artifact_type(how), artifact=True, kind="artifact")

    def _collected(self, step: str, output: str, consumer: str) -> Channel:
        """The loop DAG output that fans ``step.output`` in for ``consumer`` (outputs added on the way)."""
        inner = self._output(step, output)
        a, b = self.ancestors(self.task_of[step]), self.ancestors(consumer)
        common = 0
        while a[common] == b[common]:
            common += 1
        groups = a[common:-1]
        if not groups:
            raise ExportError(f"nbpipe.Collected({step}.{output}) is read inside the loop that makes it",
                              hint="Use nbpipe.Collected(...) in a step after the ParallelFor block.")
        key, sub, src = inner.name, self.task_of[step], output
        for g in reversed(groups):
            outs = self.outputs.setdefault(g, {})
            dag = self.dags[g].setdefault("outputs", {})
            if inner.artifact:
                outs.setdefault("artifacts", {})[key] = {**inner.definition, "isArtifactList": True}
                dag.setdefault("artifacts", {})[key] = {"artifactSelectors": [
                    {"outputArtifactKey": src, "producerSubtask": sub}]}
            else:
                outs.setdefault("parameters", {})[key] = {"parameterType": "LIST"}
                dag.setdefault("parameters", {})[key] = {"valueFromParameter": {
                    "outputParameterKey": src, "producerSubtask": sub}}
            sub, src = g, key
        if inner.artifact:
            return Channel(key, self.parent[groups[0]], {"taskOutputArtifact": {
                "producerTask": groups[0], "outputArtifactKey": key}},
                {**inner.definition, "isArtifactList": True}, artifact=True, kind="artifact")
        return Channel(key, self.parent[groups[0]], {"taskOutputParameter": {
            "producerTask": groups[0], "outputParameterKey": key}}, {"parameterType": "LIST"}, kind="list")

    def _channel(self, b: dict[str, Any]) -> Channel:
        if "parameter" in b:
            return self._param(b["parameter"])
        if "step" in b:
            return self._output(b["step"], b["output"])
        return self.channels[self.kfp[b["loop"]]]

    def ref(self, ch: Channel, dag: str) -> dict[str, Any]:
        """How a task in ``dag`` reads ``ch``; ``dag`` and the DAGs above it get it as an input."""
        if dag == ch.origin:
            return dict(ch.here)
        if not dag:
            raise ExportError(f"'{ch.name[len(PREFIX):]}' is read outside the group that makes it",
                              hint="Read loop items and outputs only inside their loop (or via nbpipe.Collected).")
        kind = "artifacts" if ch.artifact else "parameters"
        defs = self.inputs[dag].setdefault(kind, {})
        if ch.name not in defs:
            defs[ch.name] = ch.definition
            task = self.dags[self.parent[dag]]["tasks"][dag]
            task.setdefault("inputs", {}).setdefault(kind, {})[ch.name] = self.ref(ch, self.parent[dag])
        return {"componentInputArtifact" if ch.artifact else "componentInputParameter": ch.name}

    def _field(self, loop: str, field: str, dag: str) -> dict[str, Any]:
        """A task input reading ``field`` of a loop item (KFP's ``parameterExpressionSelector``)."""
        spec = self.ref(self.channels[self.kfp[loop]], dag)
        if field:
            spec["parameterExpressionSelector"] = "parseJson(string_value)" + "".join(
                f'["{part}"]' for part in field.split("."))
        return spec

    # ------------------------------------------------------------ groups
    def _group_input(self, group: str, name: str, spec: dict[str, Any], definition: dict[str, Any]) -> str:
        self.inputs[group].setdefault("parameters", {})[name] = definition
        task = self.dags[self.parent[group]]["tasks"][group]
        task.setdefault("inputs", {}).setdefault("parameters", {})[name] = spec
        return name

    def _operand_input(self, b: dict[str, Any], group: str) -> tuple[str, str]:
        """(input name, kind) of a condition operand or loop items: an input of ``group``'s task."""
        if "loop" in b and b.get("field"):
            item = self.channels[self.kfp[b["loop"]]]
            name = f"{item.name}-subvar-{b['field'].replace('.', '-subvar-')}"
            self._group_input(group, name, self._field(b["loop"], b["field"], self.parent[group]),
                              {"parameterType": "STRING"})
            return name, "any"
        ch = self._channel(b)
        if ch.artifact:
            what = f"output '{b['step']}.{b['output']}'"
            raise ExportError(f"{what} is a KFP artifact; conditions and loops need a parameter",
                              hint="Return a plain JSON value (str, int, float, bool, list, dict) from that step.")
        self.ref(ch, group)
        return ch.name, ch.kind

    def _loop(self, gid: str, g: dict[str, Any]) -> None:
        name = self.kfp[gid]
        task = self.dags[self.parent[name]]["tasks"][name]
        items = g["items"]
        if "value" in items:
            item = self.item[gid]
            task["parameterIterator"] = {"itemInput": item, "items": {"raw": json.dumps(items["value"], sort_keys=True)}}
            kind = _items_kind(items["value"])
            from .kfp import PARAMETER_TYPES

            ptype = PARAMETER_TYPES.get(kind, "STRING")
        elif "placeholder" in items:
            raise ExportError(f"ParallelFor over nbpipe.{items['placeholder'].upper()} does not map to KFP")
        else:
            source, _ = self._operand_input(items, name)
            item, kind, ptype = f"{source}-loop-item", "any", "STRING"
            task["parameterIterator"] = {"itemInput": item, "items": {"inputParameter": source}}
        self.inputs[name].setdefault("parameters", {})[item] = {"parameterType": ptype}
        self.channels[name] = Channel(item, name, {"componentInputParameter": item}, {"parameterType": ptype},
                                      kind=kind)
        if g.get("parallelism"):
            task["iteratorPolicy"] = {"parallelismLimit": g["parallelism"]}

    def _condition(self, gid: str, g: dict[str, Any]) -> None:
        name = self.kfp[gid]
        task = self.dags[self.parent[name]]["tasks"][name]
        task["triggerPolicy"] = {"condition": self._cel(g["condition"], name, top=True)}

    def _cel(self, e: dict[str, Any], group: str, top: bool = False) -> str:
        op = e["op"]
        if op in ("and", "or"):
            parts = [self._cel(a, group) for a in e["args"]]
            text = (" && " if op == "and" else " || ").join(parts) or ("true" if op == "and" else "false")
            return text if top or op == "and" or len(parts) < 2 else f"({text})"
        if op == "not":
            return f"!({self._cel(e['args'][0], group, top=True)})"
        sides = []
        for b in (e["left"], e["right"]):
            if "value" in b:
                sides.append((None, _kind_of(b["value"]), b["value"]))
            elif "placeholder" in b:
                raise ExportError(f"A condition on nbpipe.{b['placeholder'].upper()} does not map to KFP",
                                  hint="Pass the value to a step and branch on that step's output.")
            else:
                ref, kind = self._operand_input(b, group)
                sides.append((f"inputs.parameter_values['{ref}']", kind, None))
        return _comparison(op, sides)

    # ------------------------------------------------------------ step inputs
    def _inputs(self, s: dict[str, Any], task: dict[str, Any]) -> None:
        me = self.task_of[s["name"]]
        dag = self.parent[me]
        inputs: dict[str, Any] = {}
        for arg, b in sorted(s["inputs"].items()):
            if "collect" in b:
                ch = self._collected(b["collect"]["step"], b["collect"]["output"], me)
                kind, value = ("artifacts" if ch.artifact else "parameters"), self.ref(ch, dag)
            elif "loop" in b:
                kind, value = "parameters", self._field(b["loop"], b.get("field", ""), dag)
            elif "placeholder" in b:
                kind, value = "parameters", self._placeholder(s, b["placeholder"])
            elif "value" in b:
                kind, value = "parameters", {"runtimeValue": {"constant": b["value"]}}
            else:
                ch = self._channel(b)
                kind, value = ("artifacts" if ch.artifact else "parameters"), self.ref(ch, dag)
            inputs.setdefault(kind, {})[arg] = value
        if inputs:
            task["inputs"] = inputs
        # kfp.compiler also passes every value its enclosing conditions read down to the step's DAG.
        for gid in self._chain(s.get("group", "")):
            g = self.groups[gid]
            for b in _operands(g["condition"]) if g["kind"] == "condition" else []:
                if "parameter" in b or "step" in b or ("loop" in b and not b.get("field")):
                    self.ref(self._channel(b), dag)

    def _placeholder(self, s: dict[str, Any], which: str) -> dict[str, Any]:
        if which in RUNTIME:
            return {"runtimeValue": {"constant": RUNTIME[which]}}
        exit_group = next((self.kfp[gid] for gid, g in self.groups.items()
                           if g["kind"] == "exit" and g["handler"] == s["name"]), None)
        if exit_group is None:
            raise ExportError(f"Step '{s['name']}' reads nbpipe.RUN_STATUS but is no exit handler",
                              "KFP gives a PipelineTaskFinalStatus only to the exit task of a dsl.ExitHandler.",
                              f"Use it in `with nbpipe.ExitHandler({s['name']}):`.")
        return {"taskFinalStatus": {"producerTask": exit_group}}

    def _exit_handlers(self) -> None:
        """Handler steps run after their ``exit-handler-N`` DAG, whatever its outcome."""
        for gid, g in self.groups.items():
            if g["kind"] != "exit":
                continue
            handler = self.task_of[g["handler"]]
            task = self.dags[self.parent[handler]]["tasks"][handler]
            task["dependentTasks"] = sorted(set(task.get("dependentTasks", [])) | {self.kfp[gid]})
            task["triggerPolicy"] = {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}

    def components(self) -> dict[str, Any]:
        """The DAG components of the groups (``comp-for-loop-N`` …)."""
        out: dict[str, Any] = {}
        for name in self.kinds:
            entry: dict[str, Any] = {"dag": self.dags[name]}
            if self.inputs[name]:
                entry["inputDefinitions"] = self.inputs[name]
            if self.outputs.get(name):
                entry["outputDefinitions"] = self.outputs[name]
            out[f"comp-{name}"] = entry
        return out


def _operands(e: dict[str, Any]) -> list[dict[str, Any]]:
    if "args" in e:
        return [b for a in e["args"] for b in _operands(a)]
    return [e["left"], e["right"]]


def _data_sources(s: dict[str, Any]) -> set[str]:
    return {b["step"] for b in s["inputs"].values() if "step" in b}


def _kind(ptype: str) -> str:
    from .kfp import _PY_OF

    return _PY_OF.get(ptype, "any")


def _kind_of(value: Any) -> str:
    from .kfp import _json_type

    return "none" if value is None else _json_type(value)


def _items_kind(items: list[Any]) -> str:
    kinds = {_kind_of(v) for v in items}
    return kinds.pop() if len(kinds) == 1 else "any"


def _literal(value: Any, kind: str) -> str:
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return repr(float(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v, kind) for v in value) + "]"
    if isinstance(value, dict):
        raise ExportError("A condition compares with a dict constant, which KFP conditions cannot hold",
                          hint="Compare single fields (str, int, float, bool).")
    return repr(value)


def _comparison(op: str, sides: list[tuple[str | None, str, Any]]) -> str:
    """One CEL comparison with kfp's typing: int channels as int(...), int/float mixed as double."""
    if op == "in":
        (lref, lkind, lval), (rref, _, rval) = sides
        if rref is None and not isinstance(rval, list):
            raise ExportError("nbpipe condition 'is_in' needs a list of constants to map to KFP")
        kind = lkind if lkind != "any" else _items_kind(rval or [])
        left = _cast(lref, lkind) if lref else _literal(lval, kind)
        right = rref if rref else _literal(rval, kind)
        return f"{left} in {right}"
    if op not in _CEL_OPS:
        raise ExportError(f"Condition operator '{op}' does not map to KFP")
    kinds = {k for _, k, _ in sides} - {"none", "any"}
    for ref, kind, _ in sides:
        if ref and kind in ("list", "dict"):
            raise ExportError("A condition compares a list or dict value, which KFP conditions cannot",
                              "KFP needs primitive parameter values (str, int, float, bool) in conditions.",
                              "Compare a single field or a count instead.")
    numeric = kinds <= {"int", "float"}
    if len(kinds) > 1 and not numeric:
        raise ExportError(f"A condition compares {' and '.join(sorted(kinds))} values",
                          hint="Compare like with like (nbpipe's runner would also refuse this).")
    mixed = kinds == {"int", "float"}
    out = []
    for ref, kind, value in sides:
        if ref is None:
            out.append(_literal(value, "float" if mixed else kind))
        else:
            out.append(ref if mixed else _cast(ref, kind))
    return f"{out[0]} {op} {out[1]}"


def _cast(ref: str, kind: str) -> str:
    return f"int({ref})" if kind == "int" else ref
