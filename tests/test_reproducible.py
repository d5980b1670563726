"""A fresh clone installs exactly what was tested, and every place that loads payloads agrees.

The notebook side (`make setup`), the step base image, the runner image, the kfp venv the tests
and benchmarks build, and the KFP YAML's in-pod bootstrap all take their cloudpickle/dill versions
from one source, ``requirements.lock`` (refreshed only by ``make lock``). A payload pickled by one
version of cloudpickle and loaded by another is the failure this guards against.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
KFP_LOCK = ROOT / "requirements-kfp.lock"
PICKLING = ("cloudpickle", "dill")


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a universal uv lock that apply to this interpreter and platform."""
    from packaging.markers import Marker

    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)\s*(?:;\s*(.*))?$", line)
        if m and (not m.group(3) or Marker(m.group(3)).evaluate()):
            out[m.group(1).split("[")[0].lower()] = m.group(2)
    return out


def test_the_venv_was_installed_from_the_lock() -> None:
    locked = pins(LOCK)
    assert len(locked) > 100, "requirements.lock lost its pins"
    locked = {**pins(ROOT / "requirements-dist.lock"), **locked}  # torch for `make test` (CPU build: +cpu)
    drift = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"].lower().replace("_", "-")
        want = locked.get(name) or locked.get(name.replace("-", "_"))
        if want is not None and dist.version.split("+")[0] != want:
            drift[name] = (dist.version, want)
    assert not drift, f"installed != requirements.lock (run `make setup`): {drift}"


def test_lock_is_made_from_pyproject_by_make_lock() -> None:
    header = LOCK.read_text().splitlines()[:3]
    assert any("uv pip compile pyproject.toml" in line and "--universal" in line for line in header), header
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"--constraint \$\(LOCK\) -e", makefile), "make setup must install under the lock"
    assert re.search(r'pip install -q "uv==\$\(UV_VERSION\)"', makefile), "the uv that reads the lock is pinned"
    assert "\nlock:" in makefile


def test_kfp_venv_lock_loads_payloads_with_the_same_libraries() -> None:
    main, kfp = pins(LOCK), pins(KFP_LOCK)
    for lib in PICKLING:
        assert kfp[lib] == main[lib], f"{lib}: requirements-kfp.lock {kfp[lib]} != requirements.lock {main[lib]}"
    assert kfp["kfp"].startswith("2.")


@pytest.mark.parametrize("image", ["base-image", "runner-image"])
def test_images_install_under_the_lock_and_pin_nothing_else(image: str) -> None:
    text = (ROOT / "cluster" / image / "Dockerfile").read_text()
    assert re.search(r"pip install --constraint \S*requirements\.lock", text), f"{image} must install under the lock"
    for lib in PICKLING:
        assert not re.search(rf"{lib}\s*[=<>~!]=", text), f"{image} pins {lib} outside the lock"
    ignore = (ROOT / "cluster" / image / "Dockerfile.dockerignore").read_text().split()
    assert "requirements.lock" not in ignore and "*.lock" not in ignore


def test_base_image_installs_the_pickling_libraries() -> None:
    text = (ROOT / "cluster" / "base-image" / "Dockerfile").read_text()
    for lib in PICKLING:
        assert f'"{lib}"' in text, lib
    assert "COPY requirements.lock /tmp/requirements.lock" in text


def test_kfp_yaml_bootstrap_pins_the_locked_pickling_libraries(tmp_path: Path) -> None:
    """The in-pod install line of an exported KFP component names the locked versions."""
    from nbpipe import component, pipeline
    from nbpipe.export import kfp, package_to_kfp
    from nbpipe.package import build_package

    @component
    def plain(x: int) -> int:
        return x + 1

    @pipeline
    def p(x: int = 1):
        plain(x=x)

    text = package_to_kfp(build_package(p))
    locked = pins(LOCK)
    assert f"cloudpickle=={locked['cloudpickle']}" in text
    doc = yaml.safe_load(text)
    assert doc["deploymentSpec"]["executors"]
    assert kfp._installed("dill") == locked["dill"]  # what a dill payload's bootstrap pins


def test_bare_import_reaches_submodules_and_stays_light() -> None:
    code = (
        "import sys, nbpipe\n"
        "heavy = [m for m in ('fastapi', 'uvicorn', 'sqlalchemy', 'kubernetes', 'minio', 'httpx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "nbpipe.client.configure(url=None)\n"
        "assert nbpipe.export.export_notebook and nbpipe.events\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_lean_validator_skips_format_libraries_but_still_validates() -> None:
    """The runner and ``nbpipe inspect`` import jsonschema without its format libraries (~1 s of
    ``rfc3987_syntax`` grammar building), and a broken spec is still refused with the same message."""
    code = (
        "import sys, json\n"
        "from nbpipe.package import check_spec, lean_validator\n"
        "from nbpipe.errors import PackageError\n"
        "lean_validator()\n"
        "spec = {'format': 'nbpipe.package', 'version': 2, 'pipeline': {}, 'components': {}, 'steps': []}\n"
        "try:\n"
        "    check_spec(spec)\n"
        "except PackageError as exc:\n"
        "    print('refused:', exc.headline)\n"
        "assert 'rfc3987_syntax' not in sys.modules, 'format library imported'\n"
        "assert all(v is not None for v in sys.modules.values()), 'an import blocker was left behind'\n"
        "import rfc3987_syntax  # still importable by the user afterwards\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: The package's spec is invalid at pipeline" in out.stdout, out.stdout
