"""Kubernetes objects for a step attempt: the pod spec, the per-run volume claim, names and labels.

Pure functions from a job (see :mod:`nbpipe.executors.entry`) and :class:`PodSettings` to plain
manifest dicts in the Kubernetes API's own JSON shape (camelCase), so they can be checked offline
against the OpenAPI schemas and sent as-is with the ``kubernetes`` client.

Non-goals: talking to the API server (see :mod:`.kubernetes`), reading pod status (see
:mod:`.k8s_watch`), and building images (a component names its image; see ``cluster/base-image``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import NbpipeError

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUN = "nbpipe.io/run"
LABEL_STEP = "nbpipe.io/step"
LABEL_ATTEMPT = "nbpipe.io/attempt"
ANNOTATION_ATTEMPT_ID = "nbpipe.io/attempt-id"
CONTAINER = "step"
JOB_ENV = "NBPIPE_JOB"
MAX_ENV_JOB = 96 * 1024  # bytes of base64; larger jobs travel through the store instead
DEFAULT_IMAGE = "nbpipe/base:py3.11"
# What a step gets when its component asks for nothing: a scheduler-visible request (no BestEffort
# pod evicted first) and a memory limit that stops a runaway step before it takes the node.
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "256Mi"}
DEFAULT_LIMITS = {"memory": "2Gi"}
DEFAULT_PREWARM = 4  # standby pods per runner (see k8s_standby; cluster/README.md "Standby pods" has the measurements)

_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(value: str) -> str:
    """``value`` made a valid label value: <= 63 chars of ``[A-Za-z0-9_.-]``, alphanumeric at both ends.

    Values that had to change keep a short hash of the original, so two different step names
    never share a label value.
    """
    clean = _LABEL_VALUE.sub("-", value).strip("-_.")
    if clean == value and len(clean) <= 63:
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return (clean[:54].strip("-_.") + "-" + digest).strip("-_.")


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 name (pods, claims) from ``parts``, with a hash suffix so it stays unique."""
    raw = "-".join(parts)
    clean = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return clean[: limit - 9].strip("-") + "-" + digest


def pod_name(attempt_id: str) -> str:
    """The pod of attempt ``run.step.attempt``: ``nbp-<readable prefix>-<hash>``."""
    return dns_name("nbp", attempt_id)


def claim_name(run_id: str) -> str:
    """The per-run PersistentVolumeClaim of run ``run_id``."""
    return dns_name("nbp-run", run_id)


def _parse_map(text: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NbpipeError(f"{what} entry {item!r} is not KEY=VALUE", hint=f"Write {what} as k1=v1,k2=v2.")
        out[key.strip()] = value.strip()
    return out


@dataclass
class PodSettings:
    """Cluster-side settings of every step pod (from ``NBPIPE_K8S_*`` or executor options).

    Parameters
    ----------
    namespace
        Namespace the runner creates pods and claims in.
    image
        Image for steps whose component names none.
    service_account
        ServiceAccount of step pods (``nbpipe-step`` in ``cluster/``: no permissions, no token).
    image_pull_secrets
        Names of Secrets holding registry credentials.
    node_selector, tolerations
        Where step pods may run; GPU steps also tolerate the ``nvidia.com/gpu`` taint.
    env_from_secrets
        Secrets whose keys all become environment variables (``envFrom``).
    secret_env
        ``{VAR: "secret:key"}``: single keys as variables (``valueFrom.secretKeyRef``).
    s3_credentials_secret, s3_credentials_dir
        Secret with ``access-key``/``secret-key`` mounted read-only at that path, where
        :class:`nbpipe.stores.s3.S3Store` looks (``NBPIPE_S3_CREDENTIALS_DIR``).
    volume_claim, volume_mount
        An existing claim mounted into every step at ``volume_mount``.
    run_volume_size, run_volume_storage_class, run_volume_delete
        With a size (e.g. ``"1Gi"``): one claim per run, created by its first step, mounted by
        every step of the run at ``volume_mount`` and deleted when the run finishes
        (``"on-run-finish"``) or kept (``"never"``), like KFP's ``VolumeOp``.
    package_cache_claim, package_cache_path
        A claim (``ReadWriteMany`` across nodes) mounted at that path where step pods keep installed
        ``packages``, one folder per requirement set, so only the first pod with a set installs it;
        without a claim, the node's ``$TMPDIR/nbpipe-packages``.
    install_packages
        Install the ``packages`` a step's image lacks (``NBPIPE_INSTALL_PACKAGES=0`` turns off: the
        step then fails naming each lacking requirement and the version the image has).
    default_requests, default_limits
        Requests and limits (``{"cpu": "100m", "memory": "256Mi"}``, ``{"memory": "2Gi"}``) of a step
        whose component does not say (``NBPIPE_K8S_DEFAULT_REQUESTS`` / ``NBPIPE_K8S_DEFAULT_LIMITS``
        as ``cpu=100m,memory=256Mi``; empty for none). A component's ``Resources(cpu=...)`` replaces
        the CPU request, ``Resources(memory=...)`` both memory request and limit.
    package_skew
        ``NBPIPE_PACKAGE_SKEW`` for every step pod (``error``/``warn``/``off``; empty: the step's
        default, ``error``): what a step does when the image's version of a package the component
        imports differs from the kernel's (see :mod:`nbpipe.pins`). A component's ``env=`` overrides it.
    delete_pods
        ``"always"``, ``"on-success"`` (keep failed pods for ``kubectl describe``) or ``"never"``.
    deadline_margin
        Seconds added to a step's timeout for ``activeDeadlineSeconds``: the runner kills on
        timeout itself; the deadline is the backstop when the runner is down.
    prewarm, standby_idle, standby_poll
        Standby pods (:mod:`.k8s_standby`): how many the runner keeps warming for the steps its runs
        start next (``NBPIPE_K8S_PREWARM``; 0: none), how long one waits for a step before it exits
        by itself (``NBPIPE_K8S_STANDBY_IDLE`` seconds) and how often it looks for its job in the store
        (``NBPIPE_K8S_STANDBY_POLL`` seconds).
    """

    namespace: str = "default"
    image: str = DEFAULT_IMAGE
    service_account: str = ""
    image_pull_secrets: list[str] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    env_from_secrets: list[str] = field(default_factory=list)
    secret_env: dict[str, str] = field(default_factory=dict)
    s3_credentials_secret: str = ""
    s3_credentials_dir: str = "/var/run/secrets/nbpipe/s3"
    volume_claim: str = ""
    volume_mount: str = "/mnt/nbpipe"
    run_volume_size: str = ""
    run_volume_storage_class: str = ""
    run_volume_delete: str = "on-run-finish"
    package_cache_claim: str = ""
    package_cache_path: str = "/var/cache/nbpipe/packages"
    install_packages: bool = True
    default_requests: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_REQUESTS))
    default_limits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    package_skew: str = ""
    s3_light: str = ""  # NBPIPE_S3_LIGHT for every pod ("0": the full minio client; see nbpipe.stores.s3_light)
    delete_pods: str = "on-success"
    deadline_margin: float = 60.0
    prewarm: int = DEFAULT_PREWARM
    standby_idle: float = 120.0
    standby_poll: float = 0.05

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **options: Any) -> "PodSettings":
        """Settings from ``NBPIPE_K8S_*`` variables, overridden by ``options``."""
        e = dict(os.environ if env is None else env)
        s = cls()
        s.namespace = e.get("NBPIPE_K8S_NAMESPACE") or _incluster_namespace() or s.namespace
        s.image = e.get("NBPIPE_STEP_IMAGE", s.image)
        s.service_account = e.get("NBPIPE_K8S_STEP_SERVICE_ACCOUNT", "")
        s.image_pull_secrets = [x for x in e.get("NBPIPE_K8S_IMAGE_PULL_SECRETS", "").split(",") if x]
        s.node_selector = _parse_map(e.get("NBPIPE_K8S_NODE_SELECTOR", ""), "NBPIPE_K8S_NODE_SELECTOR")
        if e.get("NBPIPE_K8S_TOLERATIONS"):
            try:
                s.tolerations = list(json.loads(e["NBPIPE_K8S_TOLERATIONS"]))
            except ValueError as exc:
                raise NbpipeError(f"NBPIPE_K8S_TOLERATIONS is not JSON ({exc})",
                                  hint='Write a JSON list, e.g. [{"key": "dedicated", "operator": "Exists"}].') from None
        s.env_from_secrets = [x for x in e.get("NBPIPE_K8S_ENV_FROM_SECRETS", "").split(",") if x]
        s.secret_env = _parse_map(e.get("NBPIPE_K8S_SECRET_ENV", ""), "NBPIPE_K8S_SECRET_ENV")
        s.s3_credentials_secret = e.get("NBPIPE_S3_CREDENTIALS_SECRET", "")
        s.s3_credentials_dir = e.get("NBPIPE_S3_CREDENTIALS_DIR", s.s3_credentials_dir)
        s.volume_claim = e.get("NBPIPE_K8S_VOLUME_CLAIM", "")
        s.volume_mount = e.get("NBPIPE_K8S_VOLUME_MOUNT", s.volume_mount)
        s.run_volume_size = e.get("NBPIPE_K8S_RUN_VOLUME_SIZE", "")
        s.run_volume_storage_class = e.get("NBPIPE_K8S_RUN_VOLUME_STORAGE_CLASS", "")
        s.run_volume_delete = e.get("NBPIPE_K8S_RUN_VOLUME_DELETE", s.run_volume_delete)
        s.package_cache_claim = e.get("NBPIPE_K8S_PACKAGE_CACHE_CLAIM", "")
        s.package_cache_path = e.get("NBPIPE_K8S_PACKAGE_CACHE_PATH", s.package_cache_path)
        s.install_packages = e.get("NBPIPE_INSTALL_PACKAGES", "1") not in ("0", "false", "no")
        for var, attr in (("NBPIPE_K8S_DEFAULT_REQUESTS", "default_requests"),
                          ("NBPIPE_K8S_DEFAULT_LIMITS", "default_limits")):
            if var in e:
                setattr(s, attr, _parse_map(e[var], var))
        s.delete_pods = e.get("NBPIPE_K8S_DELETE_PODS", s.delete_pods)
        s.package_skew = e.get("NBPIPE_PACKAGE_SKEW", "").strip().lower()
        s.s3_light = e.get("NBPIPE_S3_LIGHT", "").strip()
        for var, attr, kind in (("NBPIPE_K8S_PREWARM", "prewarm", int), ("NBPIPE_K8S_STANDBY_IDLE", "standby_idle", float),
                                ("NBPIPE_K8S_STANDBY_POLL", "standby_poll", float)):
            if e.get(var, "").strip():
                try:
                    setattr(s, attr, kind(e[var]))
                except ValueError:
                    raise NbpipeError(f"{var}={e[var]!r} is not a{'n integer' if kind is int else ' number'}",
                                      hint=f"Write e.g. {var}={getattr(cls(), attr)}.") from None
        for key, value in options.items():
            if not hasattr(s, key):
                raise NbpipeError(f"Unknown kubernetes executor option {key!r}",
                                  hint=f"Known options: {', '.join(sorted(vars(cls())))}.")
            setattr(s, key, value)
        s.check()
        return s

    def check(self) -> None:
        for name, value, allowed in (("delete_pods", self.delete_pods, ("always", "on-success", "never")),
                                     ("run_volume_delete", self.run_volume_delete, ("on-run-finish", "never")),
                                     ("package_skew", self.package_skew or "error", ("error", "warn", "off"))):
            if value not in allowed:
                raise NbpipeError(f"Kubernetes executor option {name}={value!r} is not one of {', '.join(allowed)}")
        if self.prewarm < 0 or self.standby_idle <= 0 or self.standby_poll <= 0:
            raise NbpipeError(f"Standby pods need NBPIPE_K8S_PREWARM >= 0 (got {self.prewarm}), NBPIPE_K8S_STANDBY_IDLE "
                              f"> 0 (got {self.standby_idle}) and NBPIPE_K8S_STANDBY_POLL > 0 (got {self.standby_poll})",
                              hint="NBPIPE_K8S_PREWARM=0 turns standby pods off.")
        if self.volume_claim and self.run_volume_size:
            raise NbpipeError("Both NBPIPE_K8S_VOLUME_CLAIM and NBPIPE_K8S_RUN_VOLUME_SIZE are set",
                              "steps mount one volume at NBPIPE_K8S_VOLUME_MOUNT.", "Unset one of them.")
        for what, values in (("NBPIPE_K8S_DEFAULT_REQUESTS", self.default_requests),
                             ("NBPIPE_K8S_DEFAULT_LIMITS", self.default_limits)):
            for key, value in values.items():
                pattern = _QUANTITY.get(key)
                if pattern is None or not re.fullmatch(pattern, str(value)):
                    raise NbpipeError(f"{what} entry {key}={value} is not a {'/'.join(_QUANTITY)} quantity",
                                      hint=f"Write e.g. {what}=cpu=100m,memory=256Mi (an empty value sets none).")
        for key in set(self.default_requests) & set(self.default_limits):
            if quantity(self.default_requests[key]) > quantity(self.default_limits[key]):
                raise NbpipeError(f"The default {key} request {self.default_requests[key]} is above its limit "
                                  f"{self.default_limits[key]}", hint="Kubernetes refuses such pods; lower the "
                                  "request (NBPIPE_K8S_DEFAULT_REQUESTS) or raise the limit (NBPIPE_K8S_DEFAULT_LIMITS).")
        for var, ref in self.secret_env.items():
            if ":" not in ref:
                raise NbpipeError(f"NBPIPE_K8S_SECRET_ENV entry {var}={ref} does not name a key",
                                  hint=f"Write {var}=SECRET:KEY.")


def _incluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def encode_job(job: dict[str, Any]) -> str:
    """The job as base64 of gzipped JSON, for the ``NBPIPE_JOB`` variable."""
    return base64.b64encode(gzip.compress(json.dumps(job, sort_keys=True).encode(), mtime=0)).decode()


def _package_env(job: dict[str, Any], settings: PodSettings) -> list[dict[str, Any]]:
    """Where a step with ``packages`` installs what the image lacks: the cache claim's mount (without a
    claim the entrypoint uses the node's ``$TMPDIR/nbpipe-packages``), or installs off."""
    if not job.get("packages"):
        return []
    if not settings.install_packages:
        return [{"name": "NBPIPE_INSTALL_PACKAGES", "value": "0"}]
    return [{"name": "NBPIPE_PACKAGE_CACHE", "value": settings.package_cache_path}] if settings.package_cache_claim else []


ENTRY = "nbpipe.executors.entry"


def container_command(module: str = ENTRY) -> list[str]:
    """What the step container runs: ``python -m MODULE env:NBPIPE_JOB``, through :data:`BOOTSTRAP`.

    No shell: the entrypoint decodes the job from ``NBPIPE_JOB`` itself (a shell, ``base64`` and
    ``gzip`` cost three more program starts per pod) and is PID 1, so it gets the kubelet's SIGTERM.
    A component's ``packages`` are not installed here: the entrypoint checks them against the image
    and installs only what is lacking, once per requirement set, into the package cache
    (``NBPIPE_PACKAGE_CACHE``; see :func:`nbpipe.executors.envs.ensure`).
    """
    return ["python", "-c", BOOTSTRAP, "-m", module, "env:" + JOB_ENV]


# ``python -c BOOTSTRAP -m MODULE ARGS...`` runs MODULE as ``python -m MODULE ARGS...`` would, but
# with the packages ``nbpipe``, ``nbpipe.stores`` and ``nbpipe.executors`` registered without running
# their ``__init__`` (the authoring side: component, pipeline, capture, cloudpickle's hooks,
# importlib.metadata, the plugin registries and ``inspect``: ~70 ms per pod). Their submodules import
# as usual; the first other attribute anyone asks of such a package (user code doing
# ``nbpipe.Dataset``, ``from nbpipe import component``, ``from nbpipe.stores import open_store``) runs
# its real ``__init__`` then. Modules a step imports therefore write ``from ..stores.s3_light import X``,
# never ``from ..stores import s3_light`` (which asks the package). No single quotes (it may travel
# inside a shell's single quotes, e.g. in benchmarks/k8s_steps.py).
BOOTSTRAP = (
    "import sys, runpy, importlib.util as u\n"
    "def lazy(name):\n"
    "    s = u.find_spec(name)\n"
    "    if s is None or s.submodule_search_locations is None or name in sys.modules:\n"
    "        return\n"
    "    m = u.module_from_spec(s)\n"
    "    def full(attr, m=m, s=s):\n"
    "        del m.__getattr__\n"
    "        s.loader.exec_module(m)\n"
    "        return getattr(m, attr)\n"
    "    m.__getattr__ = full\n"
    "    sys.modules[name] = m\n"
    "    if \".\" in name:\n"
    "        setattr(sys.modules[name.rpartition(\".\")[0]], name.rpartition(\".\")[2], m)\n"
    "lazy(\"nbpipe\")\n"
    "if \"nbpipe\" in sys.modules:\n"
    "    lazy(\"nbpipe.stores\")\n"
    "    lazy(\"nbpipe.executors\")\n"
    "sys.argv = sys.argv[2:]\n"
    "runpy.run_module(sys.argv[0], run_name=\"__main__\", alter_sys=True)\n"
)


_UNITS = {"": 1, "m": 0.001, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_QUANTITY = {"cpu": r"\d+(\.\d+)?m?", "memory": r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T|k)?",
             "ephemeral-storage": r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T|k)?"}


def quantity(text: str) -> float:
    """A Kubernetes quantity (``500m``, ``2Gi``) as a number."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(text))
    if not m or m[2] not in _UNITS:
        raise NbpipeError(f"{text!r} is not a Kubernetes quantity", hint="Write e.g. 500m, 2 or 512Mi.")
    return float(m[1]) * _UNITS[m[2]]


def _resources(res: dict[str, Any], settings: PodSettings | None = None) -> dict[str, Any]:
    """Requests and limits: the runner's defaults, replaced by what the component asks for."""
    requests: dict[str, str] = dict(settings.default_requests) if settings else {}
    limits: dict[str, str] = dict(settings.default_limits) if settings else {}
    if res.get("memory"):
        requests.pop("memory", None)
        limits.pop("memory", None)
    if res.get("cpu"):
        requests["cpu"] = str(res["cpu"])  # no CPU limit by default: throttling hurts more than it protects
        if "cpu" in limits and quantity(limits["cpu"]) < quantity(requests["cpu"]):
            limits["cpu"] = requests["cpu"]  # a runner-wide CPU limit never undercuts what a step asks for
    if res.get("memory"):
        requests["memory"] = limits["memory"] = str(res["memory"])
    if int(res.get("gpu") or 0):
        limits["nvidia.com/gpu"] = str(int(res["gpu"]))
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def build_pod(job: dict[str, Any], attempt_id: str, settings: PodSettings, timeout: float | None = None,
              job_ref: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Pod manifest for one attempt of ``job``.

    Parameters
    ----------
    job
        The step job (see :mod:`nbpipe.executors.entry`).
    attempt_id
        ``run.step.attempt``; the pod name and labels derive from it.
    settings
        Cluster-side settings.
    timeout
        The step's timeout in seconds (``activeDeadlineSeconds`` = timeout + margin).
    job_ref
        A small stand-in job pointing at the full job in the store (for jobs too large for an
        environment variable); ``None`` passes ``job`` itself.
    """
    labels = {MANAGED_BY: "nbpipe", LABEL_RUN: label_value(str(job["run_id"])),
              LABEL_STEP: label_value(str(job["step"])), LABEL_ATTEMPT: str(int(job["attempt"]))}
    annotations = {ANNOTATION_ATTEMPT_ID: attempt_id, "nbpipe.io/component": str(job.get("component", ""))}
    encoded = encode_job(job_ref if job_ref is not None else job)
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in sorted((job.get("env") or {}).items())]
    env += [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "MPLBACKEND", "value": "Agg"},
            {"name": JOB_ENV, "value": encoded},
            *([{"name": "NBPIPE_PACKAGE_SKEW", "value": settings.package_skew}]  # (a component's env= wins)
              if settings.package_skew and "NBPIPE_PACKAGE_SKEW" not in (job.get("env") or {}) else []),
            *([{"name": "NBPIPE_S3_LIGHT", "value": settings.s3_light}]
              if settings.s3_light and "NBPIPE_S3_LIGHT" not in (job.get("env") or {}) else []),
            *_package_env(job, settings),
            {"name": "NBPIPE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    for var, ref in sorted(settings.secret_env.items()):
        secret, _, key = ref.partition(":")
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if settings.s3_credentials_secret:
        env.append({"name": "NBPIPE_S3_CREDENTIALS_DIR", "value": settings.s3_credentials_dir})
        volumes.append({"name": "s3-credentials", "secret": {"secretName": settings.s3_credentials_secret}})
        mounts.append({"name": "s3-credentials", "mountPath": settings.s3_credentials_dir, "readOnly": True})
    claim = settings.volume_claim or (claim_name(str(job["run_id"])) if settings.run_volume_size else "")
    if claim:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": "data", "mountPath": settings.volume_mount})
        env.append({"name": "NBPIPE_VOLUME", "value": settings.volume_mount})
    if settings.package_cache_claim and job.get("packages"):
        volumes.append({"name": "packages", "persistentVolumeClaim": {"claimName": settings.package_cache_claim}})
        mounts.append({"name": "packages", "mountPath": settings.package_cache_path})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": job.get("image") or settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": container_command(),
        "env": env,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if settings.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in settings.env_from_secrets]
    res = _resources(job.get("resources") or {}, settings)
    if res:
        container["resources"] = res
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container],
                            "automountServiceAccountToken": False, "enableServiceLinks": False}
    if timeout:
        spec["activeDeadlineSeconds"] = int(timeout + settings.deadline_margin)
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    tolerations = list(settings.tolerations)
    if int((job.get("resources") or {}).get("gpu") or 0) and not any(
            t.get("key") == "nvidia.com/gpu" for t in tolerations):
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        spec["tolerations"] = tolerations
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name(attempt_id), "namespace": settings.namespace, "labels": labels,
                         "annotations": annotations},
            "spec": spec}


def build_claim(run_id: str, settings: PodSettings) -> dict[str, Any]:
    """The per-run PersistentVolumeClaim (``ReadWriteOnce``: steps of a run share a node's view)."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": settings.run_volume_size}}}
    if settings.run_volume_storage_class:
        spec["storageClassName"] = settings.run_volume_storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim_name(run_id), "namespace": settings.namespace,
                         "labels": {MANAGED_BY: "nbpipe", LABEL_RUN: label_value(run_id)}},
            "spec": spec}
