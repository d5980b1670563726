"""A component records the versions of what it imports as the kernel has them; the step checks them.

Two real distributions of ``verprobe-dist`` (module ``verprobe``; 1.0 found through its RECORD, 2.0
through ``top_level.txt``) live in temporary folders: the "kernel" (this test process) has 1.0 on
``sys.path``, the real runner and its step processes have 2.0 (or 1.0) on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import numpy
import pytest
from runner_process import RunnerProcess

from nbpipe import component, pins, pipeline


def make_dist(root: Path, version: str, record: bool) -> Path:
    """``verprobe-dist`` ``version`` (module ``verprobe``) in ``root``, findable by importlib.metadata."""
    pkg = root / "verprobe"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"VERSION = {version!r}\n")
    info = root / f"verprobe_dist-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: verprobe-dist\nVersion: {version}\n")
    if record:
        (info / "RECORD").write_text(f"verprobe/__init__.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    else:
        (info / "top_level.txt").write_text("verprobe\n")
    return root


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Version 1.0 imported in this "kernel"; 1.0 and 2.0 as folders for step processes."""
    base = tmp_path_factory.mktemp("dists")
    out = {"1.0": make_dist(base / "v1", "1.0", record=True), "2.0": make_dist(base / "v2", "2.0", record=False)}
    sys.path.insert(0, str(out["1.0"]))
    pins._distribution_of.cache_clear()
    import verprobe

    assert verprobe.VERSION == "1.0"
    yield out
    sys.path.remove(str(out["1.0"]))
    sys.modules.pop("verprobe", None)
    pins._distribution_of.cache_clear()


def _runner(tmp_path: Path, pythonpath: Path, **env: str) -> RunnerProcess:
    return RunnerProcess(tmp_path / "runner", extra_env={"PYTHONPATH": str(pythonpath), **env}).start()


def _probe_component(**options):  # type: ignore[no-untyped-def]
    import verprobe

    def helper() -> str:
        import json as _json  # stdlib: never recorded

        return _json.dumps(numpy.__name__)

    @component(cache=False, **options)
    def probe() -> str:
        helper()
        return str(verprobe.VERSION)

    return probe


def test_spec_records_the_kernels_versions_of_what_the_code_uses(dists: dict[str, Path]) -> None:
    spec = _probe_component().to_spec()
    assert spec["imports"] == [f"numpy=={numpy.__version__}", "verprobe-dist==1.0"]  # module global, helper's global
    declared = _probe_component(packages=["verprobe-dist==2.0"]).to_spec()
    assert declared["imports"] == [f"numpy=={numpy.__version__}"]  # what packages= installs is not checked twice

    @component
    def plain(x: int) -> int:
        import os.path  # stdlib
        from nbpipe import Dataset  # nbpipe itself

        return x + len(os.path.sep) + len(Dataset.__name__)

    assert "imports" not in plain.to_spec()  # specs of components that import nothing installed are unchanged


def test_imports_inside_the_function_and_its_helpers_are_found() -> None:
    def helper() -> None:
        import yaml  # noqa: F401

    def f() -> None:
        import sklearn.ensemble  # noqa: F401
        from . import sibling  # type: ignore[attr-defined]  # noqa: F401 - relative: not a distribution

        helper()

    assert pins.imported_modules(f) >= {"sklearn", "yaml"}
    assert {v.split("==")[0] for v in pins.imported_versions(f)} >= {"scikit-learn", "PyYAML"}


@pytest.mark.parametrize(("step_version", "env", "options", "state", "warned"), [
    ("2.0", {}, {}, "failed", False),  # the default: a different version fails the step, naming both
    ("2.0", {"NBPIPE_PACKAGE_SKEW": "warn"}, {}, "succeeded", True),  # runner-wide policy
    ("2.0", {}, {"env": {"NBPIPE_PACKAGE_SKEW": "off"}}, "succeeded", False),  # per component
    ("1.0", {}, {}, "succeeded", False),  # same version: nothing to say
])
def test_step_checks_the_versions_before_running(dists: dict[str, Path], tmp_path: Path, step_version: str,
                                                 env: dict[str, str], options: dict, state: str, warned: bool) -> None:
    probe = _probe_component(**options)

    @pipeline
    def p():
        probe()

    runner = _runner(tmp_path, dists[step_version], **env)
    try:
        run = runner.client().submit(p).wait(timeout=120, raise_on_failure=False)
        step = run.steps["probe"]
        log = run.logs("probe")
    finally:
        runner.stop()
    assert step["state"] == state, (step, log)
    message = "Component 'probe' was defined in a kernel with verprobe-dist==1.0, but this step has verprobe-dist 2.0"
    if state == "failed":
        assert message in step["reason"] and "packages=['verprobe-dist==1.0']" in step["reason"]
        assert step["attempt"] == 1 and not step.get("traceback")  # a job error: nothing of the user's ran
    else:
        assert run.output("probe") == step_version
    assert ("nbpipe: warning: " + message in log) == warned, log


def test_a_missing_distribution_and_a_bad_policy_say_what_to_do() -> None:
    with pytest.raises(pins.VersionMismatch, match="nosuch-dist is not installed in this step's environment.*"
                                                   r"packages=\['nosuch-dist==1.0'\]"):
        pins.check("c", ["nosuch-dist==1.0"], env={})
    with pytest.raises(pins.VersionMismatch, match="NBPIPE_PACKAGE_SKEW='maybe' is not one of error, warn, off"):
        pins.check("c", ["numpy==0"], env={"NBPIPE_PACKAGE_SKEW": "maybe"})
    assert pins.check("c", ["numpy==0"], declared=["numpy>=1"], env={}) == []


def test_package_records_imports_in_its_spec(dists: dict[str, Path], tmp_path: Path) -> None:
    """The field travels in the package (compatible: optional, schema-checked when present)."""
    from nbpipe import build_package, read_package

    probe = _probe_component()

    @pipeline
    def p():
        probe()

    spec = read_package(build_package(p)).spec
    assert spec["components"]["probe"]["imports"] == [f"numpy=={numpy.__version__}", "verprobe-dist==1.0"]
    json.dumps(spec)


def test_a_new_version_in_the_kernel_is_a_cache_miss(dists: dict[str, Path], tmp_path: Path) -> None:
    """Results made with verprobe 1.0 are not reused once the kernel has 2.0 (after an upgrade and a
    restart); the same version again is a hit. Code that imports nothing installed keeps its keys."""
    def define():  # the same source each time, as a re-run cell
        import verprobe

        @component(cache=True)
        def versioned() -> str:
            return str(verprobe.VERSION)

        @pipeline
        def p():
            versioned()

        return p

    def switch_kernel_to(version: str) -> None:  # what a restart after `pip install -U` gives the kernel
        sys.path[:] = [x for x in sys.path if x not in (str(dists["1.0"]), str(dists["2.0"]))]
        sys.path.insert(0, str(dists[version]))
        sys.modules.pop("verprobe", None)
        pins._distribution_of.cache_clear()
        pins._version_of.cache_clear()
        pins._SPEC_CACHE.clear()

    runner = _runner(tmp_path, dists["1.0"], NBPIPE_PACKAGE_SKEW="off")
    try:
        client = runner.client()
        first = client.submit(define()).wait(timeout=120)
        assert first.steps["versioned"]["state"] == "succeeded"
        assert client.submit(define()).wait(timeout=120).steps["versioned"]["state"] == "cached"
        switch_kernel_to("2.0")
        upgraded = client.submit(define()).wait(timeout=120)
        assert upgraded.steps["versioned"]["state"] == "succeeded"  # not the 1.0 result
        assert client.submit(define()).wait(timeout=120).steps["versioned"]["state"] == "cached"
    finally:
        switch_kernel_to("1.0")
        import verprobe  # noqa: F401 - the module fixture's state for the tests after this one

        runner.stop()
