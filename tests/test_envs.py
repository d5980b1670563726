"""Step packages locally: what counts as missing, the cached uv overlay, installs turned off.

Uses a real runner process, real ``uv`` and a wheel built on disk (no package index needed).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from runner_process import RunnerProcess
from k8s.wheels import build_wheel

from nbpipe import component, pipeline
from nbpipe.executors import envs


def test_missing_uses_installed_distributions_and_versions() -> None:
    assert envs.missing(["cloudpickle", "cloudpickle>=1", "sqlalchemy>=2.0"]) == []
    assert envs.missing(["cloudpickle<1", "surely-not-installed-pkg-xyz"]) == ["cloudpickle<1",
                                                                                "surely-not-installed-pkg-xyz"]
    assert envs.missing(["surely-not-installed-pkg-xyz; python_version < '3'"]) == []  # marker does not apply
    with pytest.raises(envs.PackagesMissing, match="not valid.*pip's syntax"):
        envs.missing(["not a requirement !!"])


def test_prepare_builds_one_cached_overlay_that_sees_the_runner_packages(tmp_path: Path) -> None:
    name = f"nbpipe_overlay_{uuid.uuid4().hex[:6]}"
    wheel = build_wheel(tmp_path / "wheels", name, source="VALUE = 7\n")
    job = {"step": "s", "packages": [f"{name} @ {wheel.as_uri()}", "cloudpickle"]}
    log = tmp_path / "step.log"
    ready = envs.prepare(job, tmp_path / "envs", str(log))
    python = ready["python_executable"]
    assert "installing" in log.read_text() and name in log.read_text()
    out = subprocess.run([python, "-c", f"import {name}, nbpipe, cloudpickle; print({name}.VALUE)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "7"  # the overlay's package and the runner's own packages
    with pytest.raises(ModuleNotFoundError):
        __import__(name)  # the runner's environment is untouched
    assert envs.prepare(job, tmp_path / "envs")["python_executable"] == python  # cached
    assert envs.prepare({"packages": ["cloudpickle"]}, tmp_path / "envs") == {"packages": ["cloudpickle"]}


def test_with_installs_off_prepare_names_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NBPIPE_INSTALL_PACKAGES", "0")
    with pytest.raises(envs.PackagesMissing, match=r"Step 'train' needs nbpipe-absent-pkg>=1.*NBPIPE_INSTALL_PACKAGES=0"):
        envs.prepare({"step": "train", "packages": ["nbpipe-absent-pkg>=1", "cloudpickle"]}, tmp_path)


def _pkg_pipeline(req: str) -> Any:
    @component(cache=False, packages=[req])
    def use_pkg() -> int:
        import importlib

        return int(importlib.import_module(req.split(" ")[0]).VALUE)

    @pipeline
    def p():
        use_pkg()

    return p


def test_runner_runs_a_step_with_packages_in_an_overlay_or_fails_naming_them(tmp_path: Path) -> None:
    name = f"nbpipe_runner_pkg_{uuid.uuid4().hex[:6]}"
    wheel = build_wheel(tmp_path / "wheels", name, source="VALUE = 11\n")
    p = _pkg_pipeline(f"{name} @ {wheel.as_uri()}")
    r = RunnerProcess(tmp_path / "runner").start()
    try:
        run = r.client().submit(p).wait(timeout=120)
        assert run.output("use_pkg") == 11
        assert "step environment ready" in run.logs("use_pkg")
    finally:
        r.stop()
    off = RunnerProcess(tmp_path / "runner-off", extra_env={"NBPIPE_INSTALL_PACKAGES": "0"}).start()
    try:
        run = off.client().submit(p).wait(timeout=60, raise_on_failure=False)
        step = run.steps["use_pkg"]
        assert step["state"] == "failed"
        assert f"needs {name} @ {wheel.as_uri()}" in step["reason"] and "NBPIPE_INSTALL_PACKAGES=0" in step["reason"]
        assert "attempt" in step and sys.executable  # the step never ran user code: no traceback
        assert step["traceback"] == ""
    finally:
        off.stop()


def test_bare_requirements_are_pinned_to_this_environment() -> None:
    from importlib.metadata import version

    from nbpipe.component import pin_packages

    sk, pd = version("scikit-learn"), version("pandas")
    assert pin_packages(["scikit-learn", "pandas[parquet]", "numpy>=1", "surely-not-installed-pkg-xyz",
                         "x @ https://example.org/x.whl", "pyarrow; python_version < '3'"]) == (
        f"scikit-learn=={sk}", f"pandas[parquet]=={pd}", "numpy>=1", "surely-not-installed-pkg-xyz",
        "x @ https://example.org/x.whl", "pyarrow; python_version < '3'")

    @component(packages=["scikit-learn"])
    def uses_sklearn() -> int:
        return 1

    assert uses_sklearn.options.packages == ("scikit-learn",)  # what the user wrote
    assert uses_sklearn.to_spec()["options"]["packages"] == [f"scikit-learn=={sk}"]  # what the package records


def test_constraints_keep_what_is_installed_except_what_is_asked_for() -> None:
    from importlib.metadata import version

    cons = envs.constraints(["pandas==0.1", "cloudpickle"])
    assert f"python-dateutil=={version('python-dateutil')}" in cons and f"numpy=={version('numpy')}" in cons
    assert not any(c.startswith(("pandas==", "cloudpickle==")) for c in cons)
    assert envs.env_key(["a==1"], cons) == envs.env_key(["a==1"], list(reversed(cons))) != envs.env_key(["a==2"], cons)


def test_collect_removes_overlays_unused_too_long_then_the_least_recently_used(tmp_path: Path) -> None:
    import os
    import time

    now = time.time()
    for key, age_days, size in (("old", 30, 10), ("lru", 2, 600), ("fresh", 0, 600), ("building", 99, 10)):
        d = tmp_path / key
        d.mkdir()
        (d / "blob").write_bytes(b"x" * size)
        if key != "building":  # no marker yet: being built, never removed
            (d / ".nbpipe-complete").write_text("1\n")
            os.utime(d / ".nbpipe-complete", (now - age_days * 86400,) * 2)
    assert envs.collect(tmp_path, max_age=14 * 86400, max_bytes=1000) == ["old", "lru"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["building", "fresh"]
