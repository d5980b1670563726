"""Exporting a decorator-style notebook: real fresh-process builds, real runner, real packages."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path
from typing import Any


import nbpipe
from nbpipe.export import describe_package, export_notebook, plan_export
from nbpipe.export.cli import register

from . import notebooks


def test_export_is_a_normal_package_with_the_pipeline(digits: dict[str, Any]) -> None:
    pkg = nbpipe.read_package(digits["folder"] / "digits.nbpipe")
    assert pkg.data == digits["data"]
    assert pkg.name == "digits"
    assert [s["name"] for s in pkg.spec["steps"]] == ["load_data", "train", "evaluate"]
    assert pkg.parameters == [{"name": "C", "type": "float", "default": 1.0},
                              {"name": "test_size", "type": "float", "default": 0.25}]
    load = pkg.spec["components"]["load_data"]
    pinned = f"scikit-learn=={importlib.metadata.version('scikit-learn')}"  # the exporting kernel's version
    assert load["options"]["packages"] == [pinned] and load["options"]["retries"] == 1
    assert "def load_data(" in load["source"]  # source came through linecache for the synthetic file name
    print(f"export took {digits['seconds']:.1f} s, package {len(digits['data'])} bytes")


def test_heavy_cells_never_run(digits: dict[str, Any]) -> None:
    assert not digits["marker"].exists()
    program = plan_export(digits["path"])
    kept = {c.cell: c.keep for c in program.chunks}
    # cell 4 mixes constants with a helper def: all kept; the heavy cells 5, 9, 10 and the loop cell 7 are not.
    assert kept == {3: (1, 2, 3, 4, 5), 4: None, 6: None, 8: None}
    notes = "\n".join(program.notes)
    assert "dropped IPython magic `get_ipython().run_line_magic('matplotlib', 'inline')`" in notes
    assert "cell 10 (In [9]): skipped compute `run = nbpipe.run(digits_pipeline, C=0.5)`" in notes


def test_two_exports_in_fresh_processes_are_byte_identical(digits: dict[str, Any]) -> None:
    again = export_notebook(digits["path"])
    assert again == digits["data"]


def test_exported_package_runs_on_the_runner(digits: dict[str, Any], nb_client: Any) -> None:
    run = nb_client.submit(digits["data"], {"C": 0.5}).wait(timeout=240)
    assert run.state == "succeeded"
    acc = run.outputs("evaluate")["output"]
    assert 0.9 < acc <= 1.0
    train_acc = run.outputs("train")["output"]
    assert train_acc >= acc - 0.05
    labels = run.outputs("load_data")["output"]
    assert len(labels) == 450  # 25% of the 1797 digits


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nbpipe")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_inspect_shows_dag_parameters_components_and_python(digits: dict[str, Any], capsys: Any) -> None:
    args = _cli(["inspect", str(digits["folder"] / "digits.nbpipe")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out == describe_package(digits["data"])
    assert "Python: needs 3." in out
    assert "  C: float = 1.0" in out and "  test_size: float = 0.25" in out
    assert 'evaluate   upstream: load_data, train  component: evaluate "Evaluate model"' in out
    assert "resources: cpu=1 memory=1Gi" in out and "packages:  scikit-learn" in out
    assert "cache=off" in out
    args = _cli(["inspect", "--json", str(digits["folder"] / "digits.nbpipe")])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"][2]["upstream"] == ["load_data", "train"]
    assert summary["components"]["load_data"]["retries"] == 1


def test_inspect_of_a_bad_file_says_so(tmp_path: Path, capsys: Any) -> None:
    bad = tmp_path / "x.nbpipe"
    bad.write_bytes(b"not a zip")
    args = _cli(["inspect", str(bad)])
    assert args.func(args) == 1
    assert "is not an nbpipe package" in capsys.readouterr().err


def test_cli_export_plan_and_write(digits: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    args = _cli(["export", str(digits["path"]), "--plan"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "keep <nbpipe-cell-3>: statements 2, 3, 4, 5, 6" in out and "note cell 5 (In [4]): skipped" in out
    source = notebooks.write(notebooks.simple(), tmp_path / "simple.ipynb")
    target = tmp_path / "d.yaml"
    args = _cli(["export", str(source), "--format", "kfp", "-o", str(target)])
    assert args.func(args) == 0
    assert target.read_text().startswith("# PIPELINE DEFINITION\n# Name: adder\n")
    assert f"Wrote {target}" in capsys.readouterr().out
