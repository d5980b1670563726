"""Run by the kfp test venv's Python: load nbpipe's KFP YAML with kfp itself and run it locally.

``python kfp_check.py PIPELINE.yaml ROOT '{"param": value}'`` validates the YAML against KFP's
PipelineSpec protobuf (unknown or mistyped fields fail), loads it with
``kfp.components.load_component_from_text``, runs it with ``kfp.local``'s SubprocessRunner in
this interpreter, and prints one JSON line: the component's inputs/outputs as kfp sees them and
every task's executor output (parameters and artifact metadata), read from ROOT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from google.protobuf import json_format
from kfp import local
from kfp.components import load_component_from_text
from kfp.pipeline_spec import pipeline_spec_pb2


def _unpickled(path: Path) -> object:
    """A pickled return value (nbpipe's Python-object outputs) as JSON, else None."""
    import cloudpickle

    try:
        with open(path, "rb") as fh:
            value = cloudpickle.load(fh)
    except Exception:  # noqa: BLE001 - not a pickle: a Dataset/Model file the component wrote
        return None
    value = value.tolist() if hasattr(value, "tolist") else value
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)[:80]
    return value


def main() -> None:
    text = Path(sys.argv[1]).read_text()
    root = Path(sys.argv[2])
    params = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    json_format.ParseDict(yaml.safe_load(text), pipeline_spec_pb2.PipelineSpec())  # strict: raises on bad fields
    pipeline = load_component_from_text(text)
    report = {"name": pipeline.name, "inputs": sorted(pipeline.component_spec.inputs or {}), "tasks": {}}
    if "--no-run" not in sys.argv:
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
        pipeline(**params)
        for out in sorted(root.rglob("executor_output.json")):
            task = json.loads(out.read_text())
            for entry in task.get("artifacts", {}).values():
                for art in entry["artifacts"]:
                    art["value"] = _unpickled(Path(art["uri"]))
            report["tasks"][out.parent.name] = task
    print("KFP-REPORT " + json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
