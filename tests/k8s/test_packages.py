"""Step packages in pods: pinned to the kernel, installed once into the package cache, nbpipe's deps kept.

Against the API double and, with ``-m k8s``, the real API server (the k8s-rig): the runner is a
real process with the Kubernetes executor; each pod runs ``nbpipe.executors.entry``, which checks
the step's pinned ``packages`` against the image (this clone's ``.venv``) and installs what is
lacking with ``uv`` from a folder of wheels built here (no index needed) into the package-cache
volume (``NBPIPE_K8S_PACKAGE_CACHE_CLAIM``; the rig mounts nothing, so its mount path is a folder
of this machine, which pods share). Needs a cluster whose pods see this machine's files (the
double, the rig). The digits example on the real server is in :func:`test_digits_on_the_cluster`.
"""

from __future__ import annotations

import importlib.metadata
import marshal
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from nbpipe import build_package, component, pipeline, read_package
from nbpipe.stores.s3 import S3Store

from .cases import wait_for
from .conftest import ACCESS, SECRET, Cluster
from .wheels import build_wheel


@pytest.fixture(scope="module")
def cache_client(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A runner whose step pods share a package-cache claim (made by the cluster's admin, as in a cluster)."""
    claim = f"nbpipe-packages-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
    api = cluster.api()
    api.create_namespaced_persistent_volume_claim(cluster.namespace, body)
    mount = tmp_path_factory.mktemp("pkg-mount") / "cache"  # the double links the claim here; the rig: a folder
    runner = cluster.runner(tmp_path_factory.mktemp("k8s-runner"), NBPIPE_K8S_PACKAGE_CACHE_CLAIM=claim,
                            NBPIPE_K8S_PACKAGE_CACHE_PATH=str(mount))
    # the volume's contents (the double unlinks the mount path when no pod runs)
    yield runner.client(), (cluster.double.root / "volumes" / cluster.namespace / claim if cluster.double else mount)
    api.delete_namespaced_persistent_volume_claim(claim, cluster.namespace)


def _kernel_has(site: Path, wheel: Path) -> None:
    """Install ``wheel`` into ``site`` (unzip: a pure-Python wheel is its own site layout) and import from it."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    sys.path.insert(0, str(site))


def test_packages_pinned_to_the_kernel_are_installed_once_and_reused(cache_client: tuple[Any, Path],
                                                                    tmp_path: Path) -> None:
    client, volume = cache_client
    name = f"nbpipe_pinned_{uuid.uuid4().hex[:6]}"
    wheels = tmp_path / "wheels"
    old = build_wheel(wheels, name, "1.0", "VALUE = 1\n")
    build_wheel(wheels, name, "2.0", "VALUE = 2\n")  # the index's newest: not what the kernel has
    _kernel_has(tmp_path / "kernel-site", old)
    index = {"PIP_FIND_LINKS": str(wheels), "PIP_NO_INDEX": "1"}  # uv gets them as UV_FIND_LINKS/UV_NO_INDEX
    try:
        assert importlib.metadata.version(name) == "1.0"

        @component(cache=False, packages=[name], env={**index, "PYTHONDONTWRITEBYTECODE": "1"})
        def use_package() -> int:
            import importlib

            return int(importlib.import_module(name).VALUE)

        @pipeline
        def twice():
            first = use_package()
            use_package().after(first)  # the second pod starts once the first has filled the cache

        spec = read_package(build_package(twice)).spec
        assert spec["components"]["use_package"]["options"]["packages"] == [f"{name}==1.0"]
        run = client.submit(twice).wait(timeout=300)
        again = client.submit(twice).wait(timeout=300)
    finally:
        sys.path.remove(str(tmp_path / "kernel-site"))
    assert [run.output(s) for s in ("use_package", "use_package-2")] == [1, 1]  # the kernel's 1.0, not 2.0
    first, second = run.logs("use_package"), run.logs("use_package-2")
    assert f"installing 1 package(s) for this step: {name}==1.0" in first, first
    assert "from the package cache" in second and "installing" not in second, second
    assert all("from the package cache" in again.logs(s) for s in ("use_package", "use_package-2"))
    folders = [p for p in volume.iterdir() if (p / ".nbpipe-complete").exists()]
    assert len(folders) == 1 and (folders[0] / f"{name}-1.0.dist-info").is_dir()
    # compiled once by the installing pod, for the folder's final path (tracebacks find the source)
    pycs = list((folders[0] / name / "__pycache__").glob("__init__.*.pyc"))
    assert pycs, list(folders[0].rglob("*"))
    code = marshal.loads(pycs[0].read_bytes()[16:])
    assert code.co_filename.endswith(f"/{folders[0].name}/{name}/__init__.py") and ".nbpipe" not in code.co_filename
    for r in (run, again):
        started = {e.step: e.ts for e in r.events(follow=False) if type(e).__name__ == "StepStarted"}
        took = {e.step: round(e.ts - started[e.step], 2) for e in r.events(follow=False)
                if type(e).__name__ == "StepFinished" and e.step in started}
        print(f"\nstep seconds (first pod installs, the rest use the cache): {took}")


def test_a_standby_pod_that_imported_the_packages_early_still_logs_where_they_came_from(
        cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A standby pod imports its step's packages from the package cache before it has a step (and a log):
    the bound step's log still says "from the package cache" (it used to say nothing: the check ran
    before the log began, and the step's own check found the packages already imported)."""
    claim = f"nbpipe-packages-{uuid.uuid4().hex[:6]}"
    api = cluster.api()
    api.create_namespaced_persistent_volume_claim(cluster.namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    base = tmp_path_factory.mktemp("standby-packages")
    runner = cluster.runner(base / "runner", NBPIPE_K8S_PACKAGE_CACHE_CLAIM=claim, NBPIPE_K8S_PREWARM="1",
                            NBPIPE_K8S_PACKAGE_CACHE_PATH=str(base / "cache"))
    client = runner.client()
    name = f"nbpipe_warm_{uuid.uuid4().hex[:6]}"
    mark, gate = base / "imported-by", base / "gate"
    build_wheel(base / "wheels", name, "1.0", "import os\nVALUE = 1\nif os.environ.get('WARM_MARK'):\n"
                "    with open(os.environ['WARM_MARK'], 'a') as f:\n"
                "        f.write(os.environ.get('NBPIPE_POD_NAME', '') + '\\n')\n")
    index = {"PIP_FIND_LINKS": str(base / "wheels"), "PIP_NO_INDEX": "1"}

    def user(**env: str) -> Any:
        @component(cache=False, packages=[f"{name}==1.0"], env={**index, **env})
        def use(x: int) -> str:
            import importlib
            import os

            return f"{importlib.import_module(name).VALUE + x}:{os.environ['NBPIPE_POD_NAME']}"
        return use

    @component(cache=False)
    def hold(gate: str) -> int:
        import os
        import time

        while not os.path.exists(gate):  # (pods are processes of this machine, on the double and the rig)
            time.sleep(0.05)
        return 1

    try:
        first = user()

        @pipeline
        def install():
            first(x=0)

        client.submit(install).wait(timeout=300)  # fills the package cache
        marked = user(WARM_MARK=str(mark))

        @pipeline
        def warm():
            marked(x=hold(gate=str(gate)).output)

        run = client.submit(warm)
        wait_for("the standby pod to import the package", lambda: mark.exists() and mark.read_text().strip(), 120)
        gate.touch()
        run.wait(timeout=300)
        value, pod = run.output("use").split(":")
        assert value == "2" and pod in mark.read_text().split(), (pod, mark.read_text())  # the warmed pod ran it
        log = run.logs("use")
        said = f"packages {name}==1.0 from the package cache"
        assert said in log and "installing" not in log, log
        # the copy the pod uploaded (the log that outlives the pod; the runner takes it when the pod's own
        # log stream has not begun, which on a real API server is a race with a short step)
        store = S3Store(cluster.s3_endpoint, "nbpipe-k8s", runner.extra_env["NBPIPE_S3_PREFIX"],
                        access_key=ACCESS, secret_key=SECRET)
        uploaded = store.get_bytes(f"runs/{run.id}/use/1/log.txt").decode()
        assert uploaded.count(said) == 1 and log.count(said) == 1, (uploaded, log)
    finally:
        gate.touch()
        api.delete_namespaced_persistent_volume_claim(claim, cluster.namespace)


def test_an_install_never_moves_nbpipes_own_dependencies(cache_client: tuple[Any, Path], tmp_path: Path) -> None:
    """A package that needs python-dateutil 4 (what pip put over nbpipe's 2.x on the rig) is refused, named."""
    client, _ = cache_client
    name = f"nbpipe_needs_dateutil4_{uuid.uuid4().hex[:6]}"
    wheels = tmp_path / "wheels"
    build_wheel(wheels, name, "1.0", requires=("python-dateutil>=4",))
    build_wheel(wheels, "python_dateutil", "4.0.0")  # on the index: without constraints it would be taken
    have = importlib.metadata.version("python-dateutil")

    @component(cache=False, packages=[f"{name}==1.0"], env={"PIP_FIND_LINKS": str(wheels), "PIP_NO_INDEX": "1"})
    def needs_new_dateutil() -> str:
        import dateutil

        return str(dateutil.__version__)

    @pipeline
    def p():
        needs_new_dateutil()

    run = client.submit(p).wait(timeout=300, raise_on_failure=False)
    step = run.steps["needs_new_dateutil"]
    assert step["state"] == "failed", step
    assert f"Installing {name}==1.0 failed" in step["reason"] and "at its version" in step["reason"], step["reason"]
    log = run.logs("needs_new_dateutil")
    assert f"python-dateutil=={have}" in log and "python-dateutil>=4" in log, log  # the resolver names both


def test_a_version_the_image_lacks_fails_or_warns_naming_both(cluster: Cluster,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    """With installs off, a pinned version the image does not have is an error naming both versions
    (``NBPIPE_PACKAGE_SKEW=warn``: a warning, and the step runs with the image's version)."""
    have = importlib.metadata.version("cloudpickle")
    client = cluster.runner(tmp_path_factory.mktemp("k8s-runner"), NBPIPE_INSTALL_PACKAGES="0").client()

    def pipe(**env: str) -> Any:
        @component(cache=False, packages=["cloudpickle==0.9.1"], env=env)
        def skewed() -> str:
            import cloudpickle

            return str(cloudpickle.__version__)

        @pipeline
        def p():
            skewed()

        return p

    run = client.submit(pipe()).wait(timeout=120, raise_on_failure=False)
    step = run.steps["skewed"]
    assert step["state"] == "failed" and step["traceback"] == "", step  # user code never ran
    assert f"cloudpickle==0.9.1 (found {have})" in step["reason"] and "NBPIPE_INSTALL_PACKAGES=0" in step["reason"]
    warned = client.submit(pipe(NBPIPE_PACKAGE_SKEW="warn")).wait(timeout=120)
    assert warned.output("skewed") == have
    assert f"cloudpickle==0.9.1 (found {have})" in warned.logs("skewed")


def test_a_package_the_kernel_imports_at_another_version_fails_the_pod_naming_both(
        cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The kernel imports verprobe-dist 1.0; the step's pods see 2.0 (PYTHONPATH): the step fails before
    running, naming both versions; the runner's NBPIPE_PACKAGE_SKEW=warn reaches the pods (a warning)."""
    from test_package_versions import make_dist

    from nbpipe import pins

    base = tmp_path_factory.mktemp("dists")
    kernel, pods = make_dist(base / "v1", "1.0", record=True), make_dist(base / "v2", "2.0", record=False)
    sys.path.insert(0, str(kernel))
    pins._distribution_of.cache_clear()
    sys.modules.pop("verprobe", None)
    try:
        import verprobe

        @component(cache=False, env={"PYTHONPATH": str(pods)})
        def probe() -> str:
            return str(verprobe.VERSION)

        @pipeline
        def p():
            probe()

        assert read_package(build_package(p)).spec["components"]["probe"]["imports"] == ["verprobe-dist==1.0"]
        strict = cluster.runner(tmp_path_factory.mktemp("k8s-runner")).client()
        run = strict.submit(p).wait(timeout=120, raise_on_failure=False)
        lenient = cluster.runner(tmp_path_factory.mktemp("k8s-runner"), NBPIPE_PACKAGE_SKEW="warn").client()
        warned = lenient.submit(p).wait(timeout=120)
    finally:
        sys.path.remove(str(kernel))
        sys.modules.pop("verprobe", None)
        pins._distribution_of.cache_clear()
    step = run.steps["probe"]
    said = "Component 'probe' was defined in a kernel with verprobe-dist==1.0, but this step has verprobe-dist 2.0"
    assert step["state"] == "failed" and step["traceback"] == "" and said in step["reason"], step
    assert warned.output("probe") == "2.0" and f"nbpipe: warning: {said}" in warned.logs("probe")


@pytest.mark.k8s
def test_digits_on_the_cluster(real: Cluster, tmp_path: Path) -> None:
    """The digits example as pods on the real server: the image (this .venv) has the kernel's pinned
    scikit-learn/pandas/pyarrow, so no pod installs anything; prints the wall time
    (``python tests/k8s_rig/run.py --bench --digits`` compares it with a local run)."""
    import time

    from nbpipe.examples.digits import digits

    client = real.runner(tmp_path / "runner").client()
    t0 = time.perf_counter()
    run = client.submit(digits).wait(timeout=600)
    took = time.perf_counter() - t0
    accuracy = run.outputs("evaluate")["accuracy"]
    assert accuracy > 0.95
    assert not any("installing" in run.logs(s) for s in run.steps)
    print(f"\ndigits on the cluster: {took:.1f} s, accuracy {accuracy:.4f}")
