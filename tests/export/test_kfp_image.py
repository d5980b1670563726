"""KFP export says which image its YAML references and how to build and push it, and takes the
pushed image's name: ``nbpipe export --format kfp [--image REF]`` (the CLI in this process),
``%nbpipe export --format kfp [--image REF]`` (a real IPython shell with the magics) and
``package_to_kfp(..., image=)`` / ``$NBPIPE_KFP_IMAGE``. The Lab panel's route is tested in
tests/lab/test_notebook_routes.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import nbpipe
from nbpipe.cli import main
from nbpipe.export import ExportError, package_to_kfp
from nbpipe.export.kfp_image import IMAGE_ENV

PY = "%d.%d" % sys.version_info[:2]
CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef double(x: int) -> int:\n    return 2 * x",
    "@nbpipe.component(base_image='ghcr.io/acme/gpu:1')\ndef gpu(x: int) -> int:\n    return x",
    "@nbpipe.pipeline\ndef twice(x: int = 3):\n    gpu(x=double(x=x).output)",
]


def _images(text: str) -> dict[str, str]:
    spec = yaml.safe_load(text)
    return {k: v["container"]["image"] for k, v in spec["deploymentSpec"]["executors"].items()}


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    path = tmp_path / "twice.ipynb"
    nbformat.write(nb, path)
    return path


def test_cli_kfp_export_names_the_image_and_how_to_build_push_and_use_it(
        notebook: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    assert main(["export", str(notebook), "--format", "kfp"]) == 0
    out = capsys.readouterr().out
    images = _images(notebook.with_suffix(".yaml").read_text())
    assert images == {"exec-double": f"nbpipe/base:py{PY}", "exec-gpu": "ghcr.io/acme/gpu:1"}
    assert f"step double runs on nbpipe/base:py{PY}" in out
    build = (f"docker build -f cluster/base-image/Dockerfile --build-arg PYTHON_VERSION={PY} "
             f"-t REGISTRY/nbpipe-base:py{PY} .")
    assert build in out and f"docker push REGISTRY/nbpipe-base:py{PY}" in out
    assert f"nbpipe export {notebook} --format kfp --image REGISTRY/nbpipe-base:py{PY}" in out
    assert "cluster/README.md" in out and IMAGE_ENV in out
    assert "step gpu runs on ghcr.io/acme/gpu:1, the component's own base_image" in out
    assert len(out.splitlines()) <= 12  # one screen

    # Pointed at the pushed image: the default image is replaced, the component's own kept.
    assert main(["export", str(notebook), "--format", "kfp", "--image", "ghcr.io/me/nbpipe-base:py3"]) == 0
    out = capsys.readouterr().out
    assert _images(notebook.with_suffix(".yaml").read_text()) == {
        "exec-double": "ghcr.io/me/nbpipe-base:py3", "exec-gpu": "ghcr.io/acme/gpu:1"}
    assert "docker push" not in out and f"(in place of nbpipe/base:py{PY})" in out

    monkeypatch.setenv(IMAGE_ENV, "registry.local:5000/base:py3")  # the config option
    assert main(["export", str(notebook), "--format", "kfp", "-o", str(notebook.with_suffix(".env.yaml"))]) == 0
    assert _images(notebook.with_suffix(".env.yaml").read_text())["exec-double"] == "registry.local:5000/base:py3"
    capsys.readouterr()

    assert main(["export", str(notebook), "--format", "kfp", "--image", "not an image"]) == 1
    assert "'not an image' is not a container image reference" in capsys.readouterr().err
    assert main(["export", str(notebook), "--image", "x/y:1"]) == 1
    assert "--image is for KFP YAML" in capsys.readouterr().err


def test_package_to_kfp_takes_the_image(notebook: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    from nbpipe.export import export_notebook

    data = export_notebook(notebook)
    assert _images(package_to_kfp(data, image="a.io/b:c"))["exec-double"] == "a.io/b:c"
    assert _images(package_to_kfp(data))["exec-double"] == f"nbpipe/base:py{PY}"
    with pytest.raises(ExportError, match="not a container image reference"):
        package_to_kfp(data, image="two words")
    assert nbpipe.read_package(data).name == "twice"
