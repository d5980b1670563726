"""nbpipe control flow exported to KFP v2 IR, checked against kfp itself (in the kfp venv).

For each construct an nbpipe pipeline and its KFP twin (``KFP_TWINS``, the same pipeline written
with ``kfp.dsl``) are exported/compiled; the YAML must parse strictly into kfp's PipelineSpec
protobuf and load as a kfp component, and its DAG skeleton (tasks, iterators, trigger policies,
dependencies, DAG inputs/outputs) must equal kfp.compiler's. Pipelines that ``kfp.local`` (2.17)
runs correctly also run there and give nbpipe's runner's results.

``kfp.local`` gets some shapes wrong that the KFP backend runs, so those are compared on structure
only: it resolves loop items and root-level condition operands by parsing channel names for
``-Output`` (nbpipe's single output is ``output``), puts the loop item in place of every upstream
output a loop task receives, and for nested loops replaces the outer item by the inner one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import nbpipe
from nbpipe import Dataset, Input, Output, component, pipeline
from nbpipe.export import ExportError, package_to_kfp

from .conftest import HERE


# ==================================================================== components
@component(cache=False)
def numbers(n: int) -> list:
    return list(range(n))


@component(cache=False)
def add(x: int, y: int) -> int:
    return x + y


@component(cache=False)
def echo(x: list) -> list:
    return x


@component(cache=False)
def score(x: int) -> float:
    return x / 10


@component(cache=False)
def label(text: str) -> str:
    return text


@component(cache=False)
def cleanup(status: dict, run_id: str, run_name: str) -> str:
    return f"{status['state']}:{bool(run_id)}:{bool(run_name)}"


@component(cache=False)
def make_ds(n: int, out: Output[Dataset]) -> None:
    Path(out.path).write_text("x" * n)


@component(cache=False)
def use_ds(d: Input[Dataset]) -> int:
    return len(Path(d.path).read_text())


@component(cache=False)
def count(d: list) -> int:
    return sum(len(Path(a.path).read_text()) for a in d)


@component(cache=False)
def vec(x: int) -> np.ndarray:
    return np.arange(x)


@component(cache=False)
def stack(vs: list) -> list:
    return [int(v.sum()) for v in vs]


# ==================================================================== pipelines (KFP twins below)
@pipeline
def fan_in(n: int = 4):
    items = numbers(n=n)
    with nbpipe.ParallelFor(items.output, parallelism=2) as x:
        s = add(x=x, y=n)
    echo(x=nbpipe.Collected(s.output))


@pipeline
def nested(configs: list = [{"name": "a", "lr": 1}, {"name": "b", "lr": 2}]):
    with nbpipe.ParallelFor(configs) as cfg:  # noqa: SIM117 - nesting mirrors the KFP twin
        with nbpipe.ParallelFor([1, 2, 3]) as k:
            s = add(x=k, y=cfg.lr)
    echo(x=nbpipe.Collected(s.output))


@pipeline
def branches(x: int = 5):
    s = score(x=x)
    with nbpipe.If(s.output >= 0.8):
        label(text="high")
    with nbpipe.Elif(s.output >= 0.4):
        label(text="mid")
    with nbpipe.Else():
        label(text="low")


@pipeline
def exit_(x: int = 1):
    c = cleanup(status=nbpipe.RUN_STATUS, run_id=nbpipe.RUN_ID, run_name=nbpipe.RUN_NAME)
    with nbpipe.ExitHandler(c):
        b = add(x=x, y=1)
        add(x=b.output, y=1)


@pipeline
def condloop(n: int = 3, mode: str = "a"):
    a = add(x=n, y=1)
    with nbpipe.If(mode == "a"):  # noqa: SIM117 - nesting mirrors the KFP twin
        with nbpipe.ParallelFor([1, 2]) as x:
            add(x=x, y=a.output)
    with nbpipe.ParallelFor([1, 2], parallelism=1) as z:  # noqa: SIM117 - nesting mirrors the KFP twin
        with nbpipe.If(z == 1):
            label(text=mode)


@pipeline
def artloop():
    with nbpipe.ParallelFor([1, 2]) as x:
        m = make_ds(n=x)
        use_ds(d=m.outputs["out"])
    count(d=nbpipe.Collected(m.outputs["out"]))


@pipeline
def fan_param(xs: list = [1, 2, 3]):
    with nbpipe.ParallelFor(xs, parallelism=2) as x:
        s = add(x=x, y=x)
        v = vec(x=x)
    echo(x=nbpipe.Collected(s.output))
    stack(vs=nbpipe.Collected(v.output))


PIPELINES = {"fan-in": fan_in, "nested": nested, "branches": branches, "exit": exit_, "condloop": condloop,
             "artloop": artloop, "fan-param": fan_param}

KFP_TWINS = '''
import warnings; warnings.simplefilter("ignore")
from typing import List
from kfp import dsl

@dsl.component
def numbers(n: int) -> list: ...
@dsl.component
def add(x: int, y: int) -> int: ...
@dsl.component
def echo(x: list) -> list: ...
@dsl.component
def score(x: int) -> float: ...
@dsl.component
def label(text: str) -> str: ...
@dsl.component
def cleanup(status: dsl.PipelineTaskFinalStatus, run_id: str, run_name: str) -> str: ...
@dsl.component
def make_ds(n: int, out: dsl.Output[dsl.Dataset]): ...
@dsl.component
def use_ds(d: dsl.Input[dsl.Dataset]) -> int: ...
@dsl.component
def count(d: dsl.Input[List[dsl.Dataset]]) -> int: ...

@dsl.pipeline(name="fan-in")
def fan_in(n: int = 4):
    items = numbers(n=n)
    with dsl.ParallelFor(items.output, parallelism=2) as x:
        s = add(x=x, y=n)
    echo(x=dsl.Collected(s.output))

@dsl.pipeline
def nested(configs: list = [{"name": "a", "lr": 1}, {"name": "b", "lr": 2}]):
    with dsl.ParallelFor(configs) as cfg:
        with dsl.ParallelFor([1, 2, 3]) as k:
            s = add(x=k, y=cfg.lr)
    echo(x=dsl.Collected(s.output))

@dsl.pipeline
def branches(x: int = 5):
    s = score(x=x)
    with dsl.If(s.output >= 0.8):
        label(text="high")
    with dsl.Elif(s.output >= 0.4):
        label(text="mid")
    with dsl.Else():
        label(text="low")

@dsl.pipeline(name="exit")
def exit_(x: int = 1):
    c = cleanup(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER)
    with dsl.ExitHandler(c):
        b = add(x=x, y=1)
        add(x=b.output, y=1)

@dsl.pipeline
def condloop(n: int = 3, mode: str = "a"):
    a = add(x=n, y=1)
    with dsl.If(mode == "a"):
        with dsl.ParallelFor([1, 2]) as x:
            add(x=x, y=a.output)
    with dsl.ParallelFor([1, 2], parallelism=1) as z:
        with dsl.If(z == 1):
            label(text=mode)

@dsl.pipeline
def artloop():
    with dsl.ParallelFor([1, 2]) as x:
        m = make_ds(n=x)
        use_ds(d=m.outputs["out"])
    count(d=dsl.Collected(m.outputs["out"]))
'''

CHECK = '''
import json, runpy, sys, yaml
from pathlib import Path
from google.protobuf import json_format
from kfp import compiler
from kfp.components import load_component_from_text
from kfp.pipeline_spec import pipeline_spec_pb2

folder = Path(sys.argv[1])
twins = runpy.run_path(str(folder / "twins.py"))
for name in json.loads(sys.argv[2]):
    text = (folder / f"{name}.yaml").read_text()
    json_format.ParseDict(yaml.safe_load(text), pipeline_spec_pb2.PipelineSpec())  # strict
    load_component_from_text(text)
    twin = twins.get(name.replace("-", "_")) or twins.get(name + "_")
    if twin is not None:
        compiler.Compiler().compile(twin, str(folder / f"{name}.kfp.yaml"))
print("CHECKED")
'''


def _skeleton(spec: dict[str, Any]) -> Any:
    """What control flow decides: DAGs, tasks, iterators, triggers, dependencies, DAG inputs/outputs."""
    comps = {k: v for k, v in spec["components"].items() if "dag" in v}

    def norm(o: Any) -> Any:
        if isinstance(o, dict):
            return {norm(k): norm(v) for k, v in o.items() if k != "cachingOptions"}
        if isinstance(o, list):
            return [norm(v) for v in o]
        if isinstance(o, str):
            if re.fullmatch(r"comp-(?!for-loop|condition|exit-handler)[a-z-]+?-\d+", o):
                o = o.rsplit("-", 1)[0]  # kfp makes one component per task; nbpipe shares them
            return o.replace("Output", "output")
        if isinstance(o, float) and o.is_integer():
            return int(o)  # kfp writes integer constants as protobuf doubles
        return o

    return norm({"components": comps, "root": spec["root"]})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, kfp_python: Path) -> Path:
    folder = tmp_path_factory.mktemp("kfp-flow")
    for name, p in PIPELINES.items():
        (folder / f"{name}.yaml").write_text(package_to_kfp(nbpipe.build_package(p)))
    (folder / "twins.py").write_text(KFP_TWINS)
    proc = subprocess.run([str(kfp_python), "-c", CHECK, str(folder), json.dumps(list(PIPELINES))],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and "CHECKED" in proc.stdout, proc.stderr[-4000:]
    return folder


def _load(folder: Path, name: str) -> dict[str, Any]:
    return yaml.safe_load((folder / name).read_text())  # type: ignore[no-any-return]


# ==================================================================== structure against kfp.compiler
@pytest.mark.parametrize("name", ["fan-in", "nested", "branches", "exit", "condloop", "artloop"])
def test_dag_skeleton_matches_kfp_compiler(exported: Path, name: str) -> None:
    ours, theirs = _load(exported, f"{name}.yaml"), _load(exported, f"{name}.kfp.yaml")
    assert _skeleton(ours) == _skeleton(theirs)


def test_construct_shapes(exported: Path) -> None:
    fan = _load(exported, "fan-in.yaml")["root"]["dag"]["tasks"]["for-loop-1"]
    assert fan["parameterIterator"] == {"itemInput": "pipelinechannel--numbers-output-loop-item",
                                        "items": {"inputParameter": "pipelinechannel--numbers-output"}}
    assert fan["iteratorPolicy"] == {"parallelismLimit": 2} and fan["dependentTasks"] == ["numbers"]
    nest = _load(exported, "nested.yaml")["components"]
    assert nest["comp-for-loop-1"]["dag"]["tasks"]["for-loop-3"]["parameterIterator"]["items"] == {"raw": "[1, 2, 3]"}
    inner = nest["comp-for-loop-3"]["dag"]["tasks"]["add"]["inputs"]["parameters"]["y"]
    assert inner["parameterExpressionSelector"] == 'parseJson(string_value)["lr"]'
    br = _load(exported, "branches.yaml")["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    assert br["condition-3"]["triggerPolicy"]["condition"] == (
        "!(inputs.parameter_values['pipelinechannel--score-output'] >= 0.8) && "
        "inputs.parameter_values['pipelinechannel--score-output'] >= 0.4")
    ex = _load(exported, "exit.yaml")
    task = ex["root"]["dag"]["tasks"]["cleanup"]
    assert task["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
    assert task["inputs"]["parameters"] == {
        "run_id": {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}},
        "run_name": {"runtimeValue": {"constant": "{{$.pipeline_job_name}}"}},
        "status": {"taskFinalStatus": {"producerTask": "exit-handler-1"}}}
    assert ex["components"]["comp-cleanup"]["inputDefinitions"]["parameters"]["status"] == {
        "parameterType": "TASK_FINAL_STATUS", "isOptional": True}
    cond = _load(exported, "condloop.yaml")["components"]["comp-for-loop-5"]["dag"]["tasks"]["condition-6"]
    assert cond["triggerPolicy"]["condition"] == "int(inputs.parameter_values['pipelinechannel--loop-item-param-4']) == 1"
    art = _load(exported, "artloop.yaml")["components"]
    assert art["comp-for-loop-2"]["outputDefinitions"]["artifacts"]["pipelinechannel--make-ds-out"]["isArtifactList"]
    assert art["comp-count"]["inputDefinitions"]["artifacts"]["d"]["isArtifactList"]


# ==================================================================== kfp.local runs = nbpipe runs
def _outputs(root: Path) -> dict[str, Any]:
    """Parameter outputs of every task kfp.local ran, by path below the pipeline root."""
    out = {}
    for f in sorted(root.rglob("executor_output.json")):
        values = json.loads(f.read_text()).get("parameterValues", {})
        if "output" in values:
            out[str(f.parent.relative_to(root))] = values["output"]
    return out


def _local(kfp_python: Path, folder: Path, name: str, root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Run the YAML with kfp.local (``kfp_check.py``); its report line may follow log text on one line."""
    cmd = [str(kfp_python), str(HERE / "kfp_check.py"), str(folder / f"{name}.yaml"), str(root), json.dumps(params)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0 and "KFP-REPORT " in proc.stdout, f"kfp failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return _outputs(root)


def _by_task(outputs: dict[str, Any], task: str) -> list[Any]:
    return [v for k, v in sorted(outputs.items()) if k.rsplit("/", 1)[-1] == task]


def test_kfp_local_if_elif_else_and_exit_handler_like_nbpipe(exported: Path, kfp_python: Path, tmp_path: Path,
                                                              nb_client: Any) -> None:
    local = _local(kfp_python, exported, "branches", tmp_path / "b", {"x": 9})
    run = nb_client.submit(branches, {"x": 9}).wait(timeout=60)
    assert _by_task(local, "label") == [run.output("label")] == ["high"]
    states = {n: s["state"] for n, s in run.steps.items()}
    assert states["label-2"] == states["label-3"] == "skipped"
    local = _local(kfp_python, exported, "exit", tmp_path / "e", {"x": 1})
    run = nb_client.submit(exit_, {"x": 1}).wait(timeout=60)
    assert _by_task(local, "add-2") == [run.output("add-2")] == [3]
    assert _by_task(local, "cleanup") == [run.output("cleanup")] == ["succeeded:True:True"]


def test_kfp_local_loops_conditions_and_collected_like_nbpipe(exported: Path, kfp_python: Path, tmp_path: Path,
                                                              nb_client: Any) -> None:
    local = _local(kfp_python, exported, "condloop", tmp_path / "c", {"n": 3, "mode": "a"})
    run = nb_client.submit(condloop, {"n": 3, "mode": "a"}).wait(timeout=60)
    assert sorted(_by_task(local, "add-2")) == [run.output("add-2-it0"), run.output("add-2-it1")] == [5, 6]
    assert _by_task(local, "label") == [run.output("label-it0")] == ["a"]
    assert run.steps["label-it1"]["state"] == "skipped"

    local = _local(kfp_python, exported, "fan-param", tmp_path / "f", {"xs": [1, 2, 3]})
    run = nb_client.submit(fan_param, {"xs": [1, 2, 3]}).wait(timeout=60)
    assert _by_task(local, "echo") == [run.output("echo")] == [[2, 4, 6]]
    assert _by_task(local, "stack") == [run.output("stack")] == [[0, 1, 3]]

    local = _local(kfp_python, exported, "artloop", tmp_path / "a", {})
    run = nb_client.submit(artloop).wait(timeout=60)
    assert _by_task(local, "count") == [run.output("count")] == [3]


# ==================================================================== what does not map
def _export(p: Any) -> str:
    return package_to_kfp(nbpipe.build_package(p))


def test_reading_a_step_inside_an_if_from_outside_does_not_map() -> None:
    @pipeline
    def p(x: int = 5):
        s = score(x=x)
        with nbpipe.If(s.output >= 0.8):
            hi = label(text="high")
        label(text=hi.output)

    with pytest.raises(ExportError, match=r"Step 'label-2' depends on step 'label' inside an nbpipe.If block"):
        _export(p)


def test_run_status_outside_an_exit_handler_does_not_map() -> None:
    @pipeline
    def p():
        cleanup(status=nbpipe.RUN_STATUS, run_id=nbpipe.RUN_ID, run_name="x")

    with pytest.raises(ExportError, match=r"reads nbpipe.RUN_STATUS but is no exit handler"):
        _export(p)


def test_condition_on_a_list_and_collected_through_an_if_do_not_map() -> None:
    @pipeline
    def on_list(n: int = 3):
        with nbpipe.If(numbers(n=n).output == [0, 1, 2]):
            label(text="x")

    with pytest.raises(ExportError, match="compares a list or dict value"):
        _export(on_list)

    @pipeline
    def through_if():
        with nbpipe.ParallelFor([1, 2]) as x:  # noqa: SIM117 - nesting mirrors the KFP twin
            with nbpipe.If(x == 1):
                s = add(x=x, y=1)
        echo(x=nbpipe.Collected(s.output))

    with pytest.raises(ExportError, match=r"Step 'echo' collects outputs of step 'add' through an If"):
        _export(through_if)


def test_untyped_input_fed_parameter_loop_items_asks_for_a_type() -> None:
    @component
    def show(v) -> str:
        return str(v)

    @pipeline
    def p(xs: list = [1, 2]):
        with nbpipe.ParallelFor(xs) as x:
            show(v=x)

    with pytest.raises(ExportError, match="Annotate the component argument"):
        _export(p)
