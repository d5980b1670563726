"""`make test-k8s`: the ``k8s`` suite against a real kube-apiserver (the k8s-rig), then the RBAC audit.

Steps, each timed and printed:

1. **build** the rig once: ``k8s-rig.sh build`` into a cache outside the clone
   (``K8S_RIG_DIR``, default ``/var/cache/nbpipe/k8s-rig``), skipped when both binaries are
   there and run (``--version``). A fresh machine pays the 5-13 min compile once.
2. **start** it from a clean state (etcd data, pod state and audit log of an earlier run are
   removed; certificates and binaries are kept), with pods running this clone's ``.venv``
   python (``PKUBELET_PYTHON``, ``POD_PATH``).
3. **apply** the vendored CRDs (``tests/k8s/crds``: PyTorchJob, InferenceService) and
   ``cluster/manifests``' Namespace, ServiceAccounts, Role, RoleBinding and Secrets,
   and every profile overlay (``cluster/manifests/profiles/*``: namespace, Role+RoleBinding,
   ResourceQuota, LimitRange; the rig's S3 keys in their Secret), rendered by the small kustomize
   in ``tests/test_cluster_manifests.py`` and applied with the ``kubernetes`` client (kubectl is
   not needed); wait for the quotas to be counted; write a kubeconfig holding the
   ``nbpipe-runner`` ServiceAccount's token: the runner under test gets only its Roles.
4. **suite**: ``pytest -m k8s tests/k8s`` (tests inspect the cluster as the rig's admin, whose
   requests the audit policy leaves out), then **audit**: ``tests/k8s_rig/audit_check.py``
   compares the verbs the runner's account used (``WORKDIR/logs/audit.log``) with the Role.
5. **stop** the rig and any pod process left behind, always (also on failure or Ctrl-C).

``run.py --bench [ARGS]`` runs ``benchmarks/k8s_steps.py`` on the rig instead of the suite.
Extra arguments otherwise go to pytest (e.g. ``-k retry``; the audit then does not run).
Runs are serialized with a lock file in the cache (the rig's ports are fixed).
Non-goals: a long-lived dev cluster (use ``k8s-rig.sh start`` by hand) and remote clusters
(run ``pytest -m k8s`` with ``NBPIPE_TEST_KUBECONFIG``; see ``cluster/README.md``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RIG_DIR = Path(os.environ.get("K8S_RIG_DIR") or "/var/cache/nbpipe/k8s-rig")
RIG_SCRIPT = Path(os.environ.get("K8S_RIG_SCRIPT") or ROOT.parent / "shared" / "k8s-rig" / "k8s-rig.sh")
NAMESPACE = "nbpipe"
RUNNER_SA = "nbpipe-runner"
APPLY_KINDS = ("Namespace", "ServiceAccount", "Role", "RoleBinding", "Secret", "ResourceQuota", "LimitRange")
VENV_PY = Path(sys.executable)

timings: dict[str, float] = {}


def say(msg: str) -> None:
    print(f"[test-k8s {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rig(cmd: str, *args: str, env: dict[str, str] | None = None, nice: bool = False) -> None:
    argv = ["bash", str(RIG_SCRIPT), cmd, str(RIG_DIR), *args]
    if nice:
        argv = ["nice", "-n", "10", *argv]
    full = {**os.environ, **(env or {})}
    if not shutil.which("kubectl") or os.environ.get("K8S_RIG_KUBECTL_SHIM"):
        full["PATH"] = f"{kubectl_shim()}:{full['PATH']}"
    subprocess.run(argv, check=True, env=full)


def kubectl_shim() -> str:
    """A folder with a ``kubectl`` for the few calls the rig script makes (see kubectl_shim.py)."""
    folder = RIG_DIR / "run" / "shim-bin"
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "kubectl"
    exe.write_text(f'#!/bin/sh\nexec "{VENV_PY}" "{ROOT / "tests" / "k8s_rig" / "kubectl_shim.py"}" "$@"\n')
    exe.chmod(0o755)
    return str(folder)


def built() -> bool:
    """Both binaries exist and run (a half-written or foreign file does not count)."""
    for name in ("kube-apiserver", "kube-controller-manager"):
        exe = RIG_DIR / "bin" / name
        if not (exe.is_file() and os.access(exe, os.X_OK) and exe.stat().st_size > 0):
            return False
        try:
            out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if out.returncode != 0 or "v1." not in out.stdout:
            return False
    return True


def pod_processes() -> list[int]:
    """Pids of processes pkubelet started for pods: their working directory is in the rig's pod state."""
    pods = str(RIG_DIR / "pkubelet-state" / "pods")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd").startswith(pods + "/"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_all() -> None:
    t0 = time.monotonic()
    try:
        rig("stop")
    except subprocess.CalledProcessError as exc:
        say(f"rig stop failed: {exc}")
    for pid in pod_processes():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    timings["stop"] = time.monotonic() - t0


PORTS = {"etcd": 2379, "etcd peer": 2380, "kube-apiserver": 6443, "kube-controller-manager": 10257,
         "pkubelet": 10250}


def ports_in_use() -> list[str]:
    """The rig's fixed loopback ports that something else holds (after our own rig was stopped)."""
    import socket

    busy = []
    for what, port in PORTS.items():
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(f"{port} ({what})")
    return busy


def reset_state() -> None:
    """Forget the previous run's cluster (objects, pods, audit); keep binaries and certificates."""
    for sub in ("etcd-data", "pkubelet-state"):
        shutil.rmtree(RIG_DIR / sub, ignore_errors=True)
    for log in (RIG_DIR / "logs").glob("audit*.log"):
        log.unlink()
    for log in (RIG_DIR / "logs").glob("*.log"):  # the components' logs: this run's only
        if log.name != "build.log":
            log.write_bytes(b"")


def render_manifests() -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cluster_manifests import MANIFESTS, PROFILES, render

    objects = [o for o in render(MANIFESTS) if o["kind"] in APPLY_KINDS]
    home_s3 = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "nbpipe-s3")
    for folder in PROFILES.values():
        for obj in render(folder):
            if obj["kind"] == "Secret" and obj["metadata"]["name"] == "nbpipe-s3":
                obj["data"] = dict(home_s3["data"])  # the rig has one S3 server (moto) and one key pair
            objects.append(obj)
    return objects


def profile_namespaces(objects: list[dict[str, Any]]) -> dict[str, str]:
    """``{profile: namespace}`` of the applied profile overlays."""
    return {o["metadata"]["labels"]["nbpipe.io/profile"]: o["metadata"]["name"] for o in objects
            if o["kind"] == "Namespace" and "nbpipe.io/profile" in (o["metadata"].get("labels") or {})}


def api_clients(kubeconfig: Path) -> tuple[Any, Any]:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(str(kubeconfig), client_configuration=cfg)
    api = client.ApiClient(cfg)
    return client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)


def apply(objects: list[dict[str, Any]], admin: Path) -> None:
    core, rbac = api_clients(admin)
    create = {
        "Namespace": lambda o: core.create_namespace(o),
        "ServiceAccount": lambda o: core.create_namespaced_service_account(o["metadata"]["namespace"], o),
        "Secret": lambda o: core.create_namespaced_secret(o["metadata"]["namespace"], o),
        "Role": lambda o: rbac.create_namespaced_role(o["metadata"]["namespace"], o),
        "RoleBinding": lambda o: rbac.create_namespaced_role_binding(o["metadata"]["namespace"], o),
        "ResourceQuota": lambda o: core.create_namespaced_resource_quota(o["metadata"]["namespace"], o),
        "LimitRange": lambda o: core.create_namespaced_limit_range(o["metadata"]["namespace"], o),
    }
    for kind in APPLY_KINDS:  # the namespace first
        for obj in (o for o in objects if o["kind"] == kind):
            create[kind](obj)
    for quota in (o for o in objects if o["kind"] == "ResourceQuota"):
        # the quota admission refuses every pod ("status unknown for quota") until the controller counted it
        ns, name = quota["metadata"]["namespace"], quota["metadata"]["name"]
        wait_for(f"ResourceQuota {ns}/{name} to be counted",
                 lambda: (core.read_namespaced_resource_quota(name, ns).status.hard or None))


def apply_crds(admin: Path) -> None:
    """Register the vendored CRDs (``tests/k8s/crds/*.yaml``: the Training Operator's PyTorchJob, KServe's
    InferenceService; no operator runs here) as the admin, and wait until the API server serves them."""
    import yaml
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(str(admin), client_configuration=cfg)
    ext = client.ApiextensionsV1Api(client.ApiClient(cfg))
    names = []
    for path in sorted((ROOT / "tests" / "k8s" / "crds").glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                ext.create_custom_resource_definition(crd, _preload_content=False)
                names.append(crd["metadata"]["name"])
    for name in names:
        wait_for(f"CRD {name} to be established", lambda: any(
            c.type == "Established" and c.status == "True"
            for c in (ext.read_custom_resource_definition(name).status.conditions or [])))


def wait_for(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - not there yet (404) or the API is still settling
            value, last = None, exc
        else:
            last = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"test-k8s: timed out after {timeout:.0f} s waiting for {what} ({last})")
        time.sleep(0.2)


def runner_kubeconfig(admin: Path, path: Path) -> None:
    """A kubeconfig with the runner ServiceAccount's token (the legacy token Secret 1.20 creates)."""
    core, _ = api_clients(admin)

    def token() -> str:
        sa = core.read_namespaced_service_account(RUNNER_SA, NAMESPACE)
        for ref in sa.secrets or []:
            secret = core.read_namespaced_secret(ref.name, NAMESPACE)
            if secret.type == "kubernetes.io/service-account-token" and (secret.data or {}).get("token"):
                return base64.b64decode(secret.data["token"]).decode()
        return ""

    tok = wait_for(f"the token of ServiceAccount {NAMESPACE}/{RUNNER_SA}", token)
    # step pods need the namespace's default account to exist (ServiceAccount admission)
    wait_for(f"ServiceAccount {NAMESPACE}/default", lambda: core.read_namespaced_service_account("default", NAMESPACE))
    ca = base64.b64encode((RIG_DIR / "pki" / "ca.crt").read_bytes()).decode()
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "runner",
           "clusters": [{"name": "k8s-rig", "cluster": {"server": "https://127.0.0.1:6443",
                                                         "certificate-authority-data": ca}}],
           "users": [{"name": RUNNER_SA, "user": {"token": tok}}],
           "contexts": [{"name": "runner", "context": {"cluster": "k8s-rig", "user": RUNNER_SA,
                                                       "namespace": NAMESPACE}}]}
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)


def s3_keys(objects: list[dict[str, Any]]) -> tuple[str, str]:
    secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "nbpipe-s3"
                  and o["metadata"].get("namespace") == NAMESPACE)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    return data["access-key"], data["secret-key"]


def audit_marker(runner_cfg: Path) -> str:
    """A request as the runner, to know when the audit log has everything before it (batched writes)."""
    core, _ = api_clients(runner_cfg)
    marker = f"nbpipe-audit-marker-{uuid.uuid4().hex[:8]}"
    try:
        core.read_namespaced_pod(marker, NAMESPACE)
    except Exception:  # noqa: BLE001 - 404 expected; the request is what counts
        pass
    audit = RIG_DIR / "logs" / "audit.log"
    wait_for("the audit log to be written", lambda: audit.exists() and marker in audit.read_text(), timeout=60)
    return marker


def main() -> int:
    if not RIG_SCRIPT.exists():
        raise SystemExit(f"test-k8s: no k8s-rig script at {RIG_SCRIPT}; put the shared folder beside the "
                         "clone (../shared/k8s-rig) or set K8S_RIG_SCRIPT.")
    t_all = time.monotonic()
    RIG_DIR.mkdir(parents=True, exist_ok=True)
    lock = open(RIG_DIR / ".nbpipe-test-k8s.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"another test-k8s run holds {RIG_DIR}; waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)

    t0 = time.monotonic()
    cached = built()
    if not cached:
        say(f"building the k8s rig into {RIG_DIR} (once per machine; 5-13 min on 2 cores)")
        for name in ("kube-apiserver", "kube-controller-manager"):  # broken leftovers: the script trusts any file
            (RIG_DIR / "bin" / name).unlink(missing_ok=True)
        rig("build", nice=True)
        if not built():
            raise SystemExit(f"test-k8s: the rig build left no working binaries in {RIG_DIR}/bin")
    timings["build"] = time.monotonic() - t0
    say(f"rig {'cached' if cached else 'built'} in {timings['build']:.1f} s")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    code = 1
    try:
        stop_all()  # a crashed earlier run may have left parts running
        busy = ports_in_use()
        if busy:
            raise SystemExit(f"test-k8s: port(s) {', '.join(busy)} on 127.0.0.1 are held by a process that is not "
                             f"this rig ({RIG_DIR}): another k8s-rig? Stop it (k8s-rig.sh stop ITS_WORKDIR) and retry.")
        reset_state()
        t0 = time.monotonic()
        venv_bin = str(VENV_PY.parent)
        rig("start", env={"PKUBELET_PYTHON": str(VENV_PY), "POD_PATH": venv_bin})
        timings["start"] = time.monotonic() - t0

        t0 = time.monotonic()
        admin = RIG_DIR / "admin.kubeconfig"
        objects = render_manifests()
        apply(objects, admin)
        apply_crds(admin)
        runner_cfg = RIG_DIR / "run" / "nbpipe-runner.kubeconfig"
        runner_kubeconfig(admin, runner_cfg)
        access, secret = s3_keys(objects)
        timings["apply"] = time.monotonic() - t0

        env = {**os.environ, "NBPIPE_TEST_KUBECONFIG": str(runner_cfg), "NBPIPE_TEST_ADMIN_KUBECONFIG": str(admin),
               "NBPIPE_TEST_NAMESPACE": NAMESPACE, "NBPIPE_TEST_S3_ACCESS_KEY": access,
               "NBPIPE_TEST_S3_SECRET_KEY": secret, "NBPIPE_TEST_STEP_SERVICE_ACCOUNT": "nbpipe-step",
               "NBPIPE_TEST_CLUSTER": "k8s-rig",
               "NBPIPE_TEST_PROFILE_NAMESPACES": ",".join(f"{p}={ns}" for p, ns in profile_namespaces(objects).items())}
        env.pop("KUBECONFIG", None)
        t0 = time.monotonic()
        if sys.argv[1:2] == ["--bench"]:  # benchmarks/k8s_steps.py on the rig instead of the suite
            code = subprocess.run([str(VENV_PY), "benchmarks/k8s_steps.py", *sys.argv[2:]], cwd=ROOT, env=env).returncode
            timings["bench"] = time.monotonic() - t0
            return code
        suite = subprocess.run([str(VENV_PY), "-m", "pytest", "-q", "-m", "k8s", "tests/k8s", *sys.argv[1:]],
                               cwd=ROOT, env=env)
        timings["suite"] = time.monotonic() - t0
        code = suite.returncode
        if code == 0 and not sys.argv[1:]:  # the audit needs the whole suite's requests
            t0 = time.monotonic()
            marker = audit_marker(runner_cfg)
            audit = subprocess.run([str(VENV_PY), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                    "tests/k8s_rig/audit_check.py"], cwd=ROOT,
                                   env={**env, "NBPIPE_TEST_AUDIT_LOG": str(RIG_DIR / "logs" / "audit.log"),
                                        "NBPIPE_TEST_AUDIT_MARKER": marker})
            timings["audit"] = time.monotonic() - t0
            code = audit.returncode
    except KeyboardInterrupt as exc:
        say(f"interrupted ({exc}); stopping the rig")
        code = 130
    except subprocess.CalledProcessError as exc:
        say(f"the rig failed: {' '.join(map(str, exc.cmd[-3:]))} exited {exc.returncode}; last lines of its logs:")
        for log in sorted((RIG_DIR / "logs").glob("*.log")):
            if log.name not in ("build.log", "audit.log") and log.stat().st_size:
                print(f"--- {log}", *log.read_text(errors="replace").splitlines()[-8:], sep="\n", flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all()
        timings["total"] = time.monotonic() - t_all
        say("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
            + f"; build {'cached' if cached else 'compiled'}; {'PASSED' if code == 0 else 'FAILED'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
