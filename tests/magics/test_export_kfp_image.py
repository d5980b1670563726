"""``%nbpipe export --format kfp`` says which image the YAML references and how to build and push
it, and ``--image`` points the YAML at the pushed one (a real IPython shell with the magics)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import yaml
from IPython.core.error import UsageError

from nbpipe.export.kfp_image import IMAGE_ENV

PY = "%d.%d" % sys.version_info[:2]
CELLS = [
    "import nbpipe",
    "@nbpipe.component\ndef double(x: int) -> int:\n    return 2 * x",
    "@nbpipe.pipeline\ndef twice(x: int = 3):\n    double(x=double(x=x).output)",
]


def test_magic_kfp_export_says_how_to_build_push_and_use_the_image(ip: Any, tmp_path: Any, capsys: Any,
                                                                  monkeypatch: Any) -> None:
    import nbformat

    monkeypatch.delenv(IMAGE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "exp.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS]), path)
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    ip.run_line_magic("nbpipe", "export --format kfp")
    out = capsys.readouterr().out
    assert f"every step runs on nbpipe/base:py{PY}" in out
    assert f"docker push REGISTRY/nbpipe-base:py{PY}" in out
    assert f"%nbpipe export --format kfp --image REGISTRY/nbpipe-base:py{PY}" in out

    ip.run_line_magic("nbpipe", "export --format kfp --image ghcr.io/me/base:py3")
    spec = yaml.safe_load((tmp_path / "exp.kfp.yaml").read_text())
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {"ghcr.io/me/base:py3"}
    assert "docker push" not in capsys.readouterr().out
    with pytest.raises(UsageError, match="--image is for Kubeflow YAML"):
        ip.run_line_magic("nbpipe", "export --image ghcr.io/me/base:py3")
