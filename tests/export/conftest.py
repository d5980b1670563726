"""Fixtures for the export tests: notebooks written once per module, exports built once, and
the separate virtualenv that holds the real ``kfp`` (it pins kubernetes/urllib3 versions that
clash with the project's, so it lives in ``.kfp-test-venv`` at the repo root — outside tests/, so its
own files are never mistaken for ours — made with uv on first use).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
KFP_VENV = HERE.parent.parent / ".kfp-test-venv"
KFP_LOCK = ROOT / "requirements-kfp.lock"  # locked like the project venv (`make lock` refreshes it)


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The digits notebook exported once (timed) for every module that needs it."""
    from nbpipe.export import export_notebook

    from . import notebooks

    folder = tmp_path_factory.mktemp("digits")
    marker = folder / "heavy-ran"
    path = notebooks.write(notebooks.digits(marker), folder / "digits.ipynb")
    start = time.monotonic()
    data = export_notebook(path, folder / "digits.nbpipe")
    return {"path": path, "marker": marker, "data": data, "seconds": time.monotonic() - start, "folder": folder}


def _uv() -> list[str]:
    uv = Path(sys.executable).with_name("uv")
    return [str(uv)] if uv.exists() else [sys.executable, "-m", "uv"]


@pytest.fixture(scope="session")
def kfp_python() -> Path:
    """Python of a venv with kfp 2.x, nbpipe (editable, no deps) and pip (KFP executors call pip)."""
    python = KFP_VENV / "bin" / "python"
    ready = KFP_VENV / ".nbpipe-ready"
    lock = KFP_LOCK.read_text()
    if not ready.exists() or ready.read_text() != lock:
        subprocess.run(_uv() + ["venv", "-q", "--seed", "--clear", "--python", sys.executable, str(KFP_VENV)],
                       check=True)
        subprocess.run(_uv() + ["pip", "install", "-q", "--python", str(python), "-r", str(KFP_LOCK)], check=True)
        subprocess.run(_uv() + ["pip", "install", "-q", "--python", str(python), "--no-deps", "-e", str(ROOT)],
                       check=True)
        ready.write_text(lock)
    return python


def run_kfp_check(python: Path, yaml_path: Path, root: Path, params: dict[str, Any] | None = None,
                  run: bool = True) -> dict[str, Any]:
    """Run ``kfp_check.py`` in the kfp venv; return its report (raises with kfp's output on failure)."""
    cmd = [str(python), str(HERE / "kfp_check.py"), str(yaml_path), str(root), json.dumps(params or {})]
    if not run:
        cmd.append("--no-run")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("KFP-REPORT ")), None)
    assert proc.returncode == 0 and line, f"kfp failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(line[len("KFP-REPORT "):])  # type: ignore[no-any-return]
