"""KFP v2 YAML from exported packages, checked and run by the real kfp (in its own venv)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nbpipe.export import ExportError, export_notebook, package_to_kfp

from . import notebooks
from .conftest import run_kfp_check


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, Any]) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("kfp")
    out: dict[str, Any] = {"folder": folder, "digits": folder / "digits.yaml", "kale": folder / "kale.yaml"}
    out["digits"].write_text(package_to_kfp(digits["data"]))
    nb = notebooks.write(notebooks.kale(folder / "kale-heavy"), folder / "kale.ipynb")
    export_notebook(nb, out["kale"], format="kfp")
    return out


def test_digits_yaml_has_kfp_shape_and_mappings(exported: dict[str, Any]) -> None:
    text = exported["digits"].read_text()
    spec = yaml.safe_load(text)
    assert spec["schemaVersion"] == "2.1.0" and spec["pipelineInfo"]["name"] == "digits"
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == ["evaluate", "load-data", "train"]
    ev = tasks["evaluate"]
    assert ev["taskInfo"]["name"] == "Evaluate model" and ev["cachingOptions"] == {}
    assert ev["dependentTasks"] == ["load-data", "train"]
    assert ev["inputs"]["artifacts"]["labels"] == {"taskOutputArtifact": {"producerTask": "load-data",
                                                                          "outputArtifactKey": "output"}}
    load = tasks["load-data"]
    assert load["retryPolicy"] == {"maxRetryCount": 1, "backoffDuration": "1s", "backoffFactor": 2.0,
                                   "backoffMaxDuration": "300s"}
    assert load["inputs"]["parameters"]["test_size"] == {"componentInputParameter": "test_size"}
    comps = spec["components"]
    outs = comps["comp-evaluate"]["outputDefinitions"]
    assert outs["parameters"] == {"output": {"parameterType": "NUMBER_DOUBLE"}}
    assert outs["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.ClassificationMetrics"
    assert comps["comp-load-data"]["outputDefinitions"]["artifacts"]["output"]["artifactType"][
        "schemaTitle"] == "system.Artifact"  # numpy array return: a pickled file
    container = spec["deploymentSpec"]["executors"]["exec-load-data"]["container"]
    assert container["resources"]["resourceCpuLimit"] == "1" and container["resources"]["resourceMemoryLimit"] == "1Gi"
    assert container["image"] == "nbpipe/base:py%d.%d" % sys.version_info[:2]
    assert "'scikit-learn==" in container["command"][2]  # pinned to the kernel's version
    assert container["args"] == ["--executor_input", "{{$}}", "--function_to_execute", "load_data"]
    assert spec["root"]["inputDefinitions"]["parameters"]["C"] == {
        "parameterType": "NUMBER_DOUBLE", "defaultValue": 1.0, "isOptional": True}


def test_yaml_is_deterministic(exported: dict[str, Any]) -> None:
    again = export_notebook(exported["folder"] / "kale.ipynb", format="kfp")
    assert again == exported["kale"].read_bytes()


def test_kfp_loads_the_digits_yaml(exported: dict[str, Any], kfp_python: Path, tmp_path: Path) -> None:
    report = run_kfp_check(kfp_python, exported["digits"], tmp_path, run=False)
    assert report["name"] == "digits" and report["inputs"] == ["C", "test_size"]


def test_kfp_local_runs_the_kale_pipeline_like_nbpipe(exported: dict[str, Any], kfp_python: Path,
                                                      tmp_path: Path, nb_client: Any) -> None:
    report = run_kfp_check(kfp_python, exported["kale"], tmp_path, {"FACTOR": 2})
    total = report["tasks"]["transform"]["artifacts"]["total"]["artifacts"][0]["value"]
    data = export_notebook(exported["folder"] / "kale.ipynb")
    run = nb_client.submit(data, {"FACTOR": 2}).wait(timeout=180)
    assert total == run.outputs("transform")["total"] == 90
    assert report["tasks"]["load"]["artifacts"]["data"]["artifacts"][0]["value"] == list(range(10))


@pytest.mark.slow
def test_kfp_local_runs_digits_with_artifacts(exported: dict[str, Any], kfp_python: Path, tmp_path: Path) -> None:
    report = run_kfp_check(kfp_python, exported["digits"], tmp_path, {"C": 0.5})
    ev = report["tasks"]["evaluate"]
    acc = ev["parameterValues"]["output"]
    assert 0.9 < acc <= 1.0
    assert ev["artifacts"]["metrics"]["artifacts"][0]["metadata"] == {"accuracy": acc}
    cm = ev["artifacts"]["report"]["artifacts"][0]["metadata"]["confusionMatrix"]
    assert [a["displayName"] for a in cm["annotationSpecs"]] == [str(i) for i in range(10)]
    assert sum(sum(r["row"]) for r in cm["rows"]) == 450
    assert len(report["tasks"]["load-data"]["artifacts"]["output"]["artifacts"][0]["value"]) == 450


def test_input_fed_two_kinds_of_values_does_not_map(tmp_path: Path) -> None:
    nb = notebooks.simple(pipeline_cell=(
        "from typing import Any\n@component\ndef show(v) -> str:\n    return str(v)\n"
        "@component\ndef obj() -> Any:\n    return object()\n"
        "@pipeline\ndef mixed():\n    show(v=1)\n    show(v=obj().output)"))
    data = export_notebook(notebooks.write(nb, tmp_path / "m.ipynb"))
    with pytest.raises(ExportError) as info:
        package_to_kfp(data)
    assert "Input 'v' of component 'show' has no single KFP type" in info.value.message
