"""Offline checks of ``cluster/`` (kustomize manifests, Dockerfiles) and ``binder/``.

The kustomizations are rendered here in Python (resources, namespace, labels,
secretGenerator, strategic-merge patches, images: the subset they use; an unknown field
fails the test rather than being ignored), then every object is validated against the
Kubernetes OpenAPI schemas shipped with ``kubernetes-validate`` and checked for least
privilege, hardening and wiring (Secrets, volumes, Services, probes, env) that the schema
cannot see. Non-goals: applying to a cluster (none can run here) and building the images
(no container runtime); those stay manual, see ``cluster/README.md``.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import pytest
import yaml

from nbpipe.executors.k8s_pod import quantity
from nbpipe.stores.s3 import parse_endpoint

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
MANIFESTS = CLUSTER / "manifests"
KUSTOMIZATIONS = {"base": MANIFESTS, "postgres": MANIFESTS / "overlays" / "postgres"}
PROFILES = {p.name: p for p in sorted((MANIFESTS / "profiles").iterdir()) if (p / "kustomization.yaml").exists()}
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())  # oldest we support, newest known
NAMESPACE = "nbpipe"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

Obj = dict[str, Any]

# -- a small kustomize -----------------------------------------------------------------------

SUPPORTED = {
    "apiVersion", "kind", "namespace", "labels", "resources", "secretGenerator",
    "generatorOptions", "patches", "images",
}  # fmt: skip
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, ``#`` comments and blank lines skipped (kustomize's env format)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: line without '=': {line!r}"
            pairs[key.strip()] = value
    return pairs


def generate_secret(folder: Path, spec: Obj) -> Obj:
    """A Secret from a secretGenerator entry (``envs``, ``files`` and ``literals``)."""
    assert set(spec) <= {"name", "namespace", "envs", "files", "literals", "type"}, f"unsupported secretGenerator keys: {spec}"
    data: dict[str, str] = {}
    for env in spec.get("envs", []):
        data.update(read_env_file(folder / env))
    for entry in spec.get("files", []):  # KEY=path, or path (the key is its file name)
        key, _, path = entry.rpartition("=")
        data[key or Path(path).name] = (folder / path).read_text()
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": spec["name"], **({"namespace": spec["namespace"]} if "namespace" in spec else {})},
        "type": spec.get("type", "Opaque"),
        "data": encoded,
    }


def strategic_merge(base: Obj, patch: Obj) -> None:
    """Merge ``patch`` into ``base``; lists of named items merge by name, patch items first."""
    for key, value in patch.items():
        current = base.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and all("name" in i for i in value):
            by_name = {item["name"]: item for item in current}
            merged = []
            for item in value:
                if item["name"] in by_name:
                    strategic_merge(by_name[item["name"]], item)
                    merged.append(by_name.pop(item["name"]))
                else:
                    merged.append(item)
            base[key] = merged + [item for item in current if item["name"] in by_name]
        else:
            base[key] = copy.deepcopy(value)


def pod_spec(obj: Obj) -> Obj | None:
    """The pod template spec of a workload, else None."""
    if obj["kind"] in WORKLOADS:
        return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None


def containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    return [] if spec is None else spec.get("initContainers", []) + spec["containers"]


def render(folder: Path) -> list[Obj]:
    """Render the kustomization in ``folder`` like ``kubectl kustomize`` would (our subset)."""
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(kust) <= SUPPORTED, f"{folder}: renderer does not support {set(kust) - SUPPORTED}"
    objects: list[Obj] = []
    for resource in kust.get("resources", []):
        path = folder / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    if kust.get("secretGenerator"):
        # No content-hash name suffixes here; the manifests must opt out of them.
        assert kust.get("generatorOptions", {}).get("disableNameSuffixHash") is True
        objects += [generate_secret(folder, spec) for spec in kust["secretGenerator"]]
    for patch_ref in kust.get("patches", []):
        assert set(patch_ref) == {"path"}, f"only file patches are supported: {patch_ref}"
        patch = yaml.safe_load((folder / patch_ref["path"]).read_text())
        matches = find(objects, patch["kind"], patch["metadata"]["name"])
        assert len(matches) == 1, f"patch {patch_ref['path']} matches {len(matches)} objects"
        strategic_merge(matches[0], patch)
    for obj in objects:
        meta = obj["metadata"]
        if "namespace" in kust and obj["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = kust["namespace"]
            for subject in obj.get("subjects", []):
                if subject["kind"] == "ServiceAccount":
                    subject["namespace"] = kust["namespace"]
        for label in kust.get("labels", []):
            assert not label.get("includeSelectors"), "selector labels are not supported"
            meta.setdefault("labels", {}).update(label["pairs"])
        for image in kust.get("images", []):
            for container in containers(obj):
                if container["image"] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return objects


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    """Rendered objects of each kustomization (base, postgres overlay)."""
    return render(KUSTOMIZATIONS[request.param])


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return render(MANIFESTS)


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


# -- schema and structure --------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_matches_the_kubernetes_schema(objects: list[Obj], version: str) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    kinds = sorted({o["kind"] for o in objects})
    assert {"Deployment", "Namespace", "Role", "RoleBinding", "Secret", "Service"} <= set(kinds)


def test_names_are_unique_and_everything_is_in_the_namespace(objects: list[Obj]) -> None:
    ids = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(ids) == len(set(ids)), f"duplicate objects: {ids}"
    assert [o["metadata"]["name"] for o in objects if o["kind"] in CLUSTER_SCOPED] == [NAMESPACE]
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "nbpipe"


# -- RBAC ------------------------------------------------------------------------------------


def test_rbac_is_least_privilege(objects: list[Obj]) -> None:
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    roles = find(objects, "Role")
    assert [r["metadata"]["name"] for r in roles] == ["nbpipe-runner"]
    granted = {
        (group, resource, verb)
        for rule in roles[0]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    expected = {("", "pods", v) for v in ("create", "get", "list", "watch", "delete")}
    expected |= {("", "pods", "patch")}  # binding a prewarmed standby pod to its attempt (its labels)
    expected |= {("", "pods/log", "get")}
    expected |= {("", "persistentvolumeclaims", v) for v in ("create", "delete")}
    expected |= {("", "services", v) for v in ("create", "delete")}  # distributed steps, endpoints
    expected |= {("apps", "deployments", v) for v in ("create", "get", "patch", "delete")}  # endpoints (k8s serving)
    expected |= {("", "secrets", v) for v in ("create", "delete")}  # endpoints' tokens: written, never read
    expected |= {("kubeflow.org", "pytorchjobs", v) for v in ("create", "get", "list", "watch", "delete")}  # kubeflow_job
    expected |= {("serving.kserve.io", "inferenceservices", v) for v in ("create", "get", "patch", "delete")}  # kserve
    # what the runner used in a whole k8s suite run (audit log): tests/k8s_rig/audit_check.py
    assert granted == expected
    assert not any("*" in part for triple in granted for part in triple)
    assert not any(resource == "secrets" and verb not in ("create", "delete") for _, resource, verb in granted)
    assert not any("nonResourceURLs" in rule for rule in roles[0]["rules"])


def test_runner_runs_as_the_bound_service_account(objects: list[Obj]) -> None:
    binding = one(objects, "RoleBinding", "nbpipe-runner")
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nbpipe-runner"}
    assert binding["roleRef"] == role_ref
    subject = {"kind": "ServiceAccount", "name": "nbpipe-runner", "namespace": NAMESPACE}
    assert binding["subjects"] == [subject]
    runner = one(objects, "Deployment", "nbpipe-runner")
    assert pod_spec(runner)["serviceAccountName"] == "nbpipe-runner"  # type: ignore[index]
    one(objects, "ServiceAccount", "nbpipe-runner")
    step_account = env_of(containers(runner)[0])["NBPIPE_K8S_STEP_SERVICE_ACCOUNT"]["value"]
    step_sa = one(objects, "ServiceAccount", step_account)
    assert step_sa["automountServiceAccountToken"] is False
    bound = {s["name"] for b in find(objects, "RoleBinding") for s in b["subjects"]}
    assert step_account not in bound, "step pods run user code: they must get no API permissions"


# -- workloads -------------------------------------------------------------------------------


def test_every_pod_is_hardened(objects: list[Obj]) -> None:
    # The Namespace enforces the "restricted" Pod Security Standard; pods that break it
    # would be rejected at apply time, so check its rules here.
    namespace = one(objects, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = [o for o in objects if pod_spec(o) is not None]
    assert workloads
    for obj in workloads:
        spec = pod_spec(obj)
        assert spec is not None
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(obj):
            where = f"{obj['metadata']['name']}/{container['name']}"
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert ":" in container["image"] and not container["image"].endswith(":latest"), where
            assert container["readinessProbe"] and container["livenessProbe"], where


def test_runner_deployment(objects: list[Obj]) -> None:
    runner = one(objects, "Deployment", "nbpipe-runner")
    assert runner["spec"]["replicas"] == 1 and runner["spec"]["strategy"]["type"] == "Recreate"
    (container,) = containers(runner)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8765}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/api/v1/health", "port": "http"}
    env = env_of(container)
    assert env["NBPIPE_EXECUTOR"]["value"] == "kubernetes"
    assert env["NBPIPE_STORE"]["value"] == "s3"
    assert env["NBPIPE_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "nbpipe-runner", "key": "token"}
    assert env["NBPIPE_K8S_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(runner)["volumes"]}  # type: ignore[index]
    claim = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
    one(objects, "PersistentVolumeClaim", claim)
    assert env["NBPIPE_DATA_DIR"]["value"] == "/data"
    service = one(objects, "Service", "nbpipe-runner")
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8765, "http")]


def test_runner_reads_its_users_file_from_a_mounted_secret(objects: list[Obj], tmp_path: Path) -> None:
    """The Deployment mounts the nbpipe-users Secret where NBPIPE_USERS_FILE points, and the
    file the base ships parses as the runner parses it (no users: the runner's token is the admin)."""
    from nbpipe.runner.auth import Identities
    from nbpipe.runner.profiles import Placements

    (container,) = containers(one(objects, "Deployment", "nbpipe-runner"))
    path = Path(env_of(container)["NBPIPE_USERS_FILE"]["value"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    volume = next(v for v in pod_spec(one(objects, "Deployment", "nbpipe-runner"))["volumes"]  # type: ignore[index]
                  if v["name"] == mount["name"])
    assert mount["readOnly"] is True
    secret = one(objects, "Secret", volume["secret"]["secretName"])
    assert set(secret["data"]) == {path.name}
    users = tmp_path / path.name
    users.write_bytes(base64.b64decode(secret["data"][path.name]))
    ids = Identities("runner-token", users)  # strict: a file that does not parse is an error here
    me = ids.resolve({"authorization": "Bearer runner-token"}, {})
    assert me is not None and me.admin  # the runner's own token: the admin 'local'
    assert ids.resolve({"authorization": "Bearer someone-else"}, {}) is None
    assert Placements(users).get("team-a") is None  # profiles are opt-in (commented out)


def test_runner_reaches_minio_with_the_store_settings(objects: list[Obj]) -> None:
    env = env_of(containers(one(objects, "Deployment", "nbpipe-runner"))[0])
    host, secure = parse_endpoint(env["NBPIPE_S3_ENDPOINT"]["value"], None)
    name, _, port = host.partition(":")
    service = one(objects, "Service", name)
    assert int(port) in {p["port"] for p in service["spec"]["ports"]} and secure is False
    s3_secret = env["NBPIPE_S3_CREDENTIALS_SECRET"]["value"]
    keys = set(one(objects, "Secret", s3_secret)["data"])
    assert keys == {"access-key", "secret-key"}  # the file names S3Store reads from the mount
    runner_spec = pod_spec(one(objects, "Deployment", "nbpipe-runner"))
    assert runner_spec is not None
    mount = next(m for m in containers(one(objects, "Deployment", "nbpipe-runner"))[0]["volumeMounts"]
                 if m["mountPath"] == env["NBPIPE_S3_CREDENTIALS_DIR"]["value"])
    volume = next(v for v in runner_spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == s3_secret and mount["readOnly"] is True
    minio_env = env_of(containers(one(objects, "Deployment", "minio"))[0])
    root = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
    assert {minio_env[v]["valueFrom"]["secretKeyRef"]["name"] for v in root} == {s3_secret}


def references(obj: Obj) -> Iterator[tuple[str, str, str | None]]:
    """(kind, name, key) of every Secret, PVC and ServiceAccount a workload refers to."""
    spec = pod_spec(obj)
    if spec is None:
        return
    templates = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"], None
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim and claim not in templates:
            yield "PersistentVolumeClaim", claim, None
    if "serviceAccountName" in spec:
        yield "ServiceAccount", spec["serviceAccountName"], None
    for container in containers(obj):
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                yield "Secret", ref["name"], ref["key"]


def test_every_reference_resolves(objects: list[Obj]) -> None:
    for obj in objects:
        for kind, name, key in references(obj):
            target = one(objects, kind, name)
            if key is not None:
                assert key in target["data"], f"{obj['metadata']['name']} needs {name}/{key}"
        for container in containers(obj):
            defined: set[str] = set()
            for item in container.get("env", []):
                used = set(re.findall(r"\$\((\w+)\)", item.get("value", "")))
                assert used <= defined, f"{item['name']} uses {used - defined} before it is defined"
                defined.add(item["name"])


def test_services_select_their_pods(objects: list[Obj]) -> None:
    for service in find(objects, "Service"):
        selector = service["spec"]["selector"]
        pods = [o for o in objects if pod_spec(o) is not None
                and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()]
        assert len(pods) == 1, f"Service {service['metadata']['name']} selects {len(pods)} workloads"
        port_names = {p["name"] for c in containers(pods[0]) for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_generated_secrets_are_marked_as_placeholders(base: list[Obj]) -> None:
    readme = (CLUSTER / "README.md").read_text()
    for env_file in sorted(MANIFESTS.rglob("secrets/*.env")):
        assert str(env_file.relative_to(ROOT)) in readme, f"README must say to change {env_file.name}"
        secrets = {k: v for k, v in read_env_file(env_file).items() if k != "access-key"}
        assert secrets and all(v.startswith("CHANGE-ME") for v in secrets.values()), env_file


def test_postgres_overlay_sets_the_database_url() -> None:
    objects = render(KUSTOMIZATIONS["postgres"])
    env = env_of(containers(one(objects, "Deployment", "nbpipe-runner"))[0])
    url = env["NBPIPE_DATABASE_URL"]["value"]
    assert url.startswith("postgresql+psycopg://nbpipe:$(NBPIPE_DB_PASSWORD)@postgres:5432/nbpipe")
    assert env["NBPIPE_EXECUTOR"]["value"] == "kubernetes", "the patch must keep the base env"
    service = one(objects, "Service", "postgres")
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]
    database = one(objects, "StatefulSet", "postgres")
    assert env_of(containers(database)[0])["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == (
        env["NBPIPE_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]
    )
    base_env = env_of(containers(one(render(MANIFESTS), "Deployment", "nbpipe-runner"))[0])
    assert "NBPIPE_DATABASE_URL" not in base_env


# -- profile overlays (cluster/manifests/profiles/<profile>) ----------------------------------


def grants(role: Obj) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def profile_namespace(name: str) -> str:
    return f"nbpipe-{name}"


@pytest.fixture(scope="module", params=sorted(PROFILES))
def profile(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    """(profile name, rendered objects of its overlay)."""
    return request.param, render(PROFILES[request.param])


def test_there_are_profile_overlays_and_the_readme_shows_how_to_apply_them() -> None:
    assert len(PROFILES) >= 2, "the rig applies two profiles (tests/k8s_rig/run.py)"
    readme = (CLUSTER / "README.md").read_text()
    for name in PROFILES:
        assert f"kubectl apply -k cluster/manifests/profiles/{name}" in readme
    assert "profiles:" in readme and "namespace: nbpipe-team-a" in readme


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_profile_objects_match_the_kubernetes_schema(profile: tuple[str, list[Obj]], version: str) -> None:
    for obj in profile[1]:
        kubernetes_validate.validate(obj, version, strict=True)


def test_a_profile_overlay_is_its_namespace_and_nothing_else(profile: tuple[str, list[Obj]]) -> None:
    name, objects = profile
    ns = profile_namespace(name)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["Namespace", "ServiceAccount", "Role", "RoleBinding", "ResourceQuota", "LimitRange",
                            "Secret"]), kinds
    namespace = one(objects, "Namespace", ns)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == ns, (obj["kind"], obj["metadata"])
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "nbpipe"
        assert obj["metadata"]["labels"]["nbpipe.io/profile"] == name
    assert not any(o["metadata"]["name"] == NAMESPACE for o in objects if o["kind"] == "Namespace")


def test_the_runner_gets_only_the_step_pod_part_of_its_role_in_a_profile(profile: tuple[str, list[Obj]],
                                                                         base: list[Obj]) -> None:
    name, objects = profile
    role = one(objects, "Role", "nbpipe-runner")
    home = grants(one(base, "Role", "nbpipe-runner"))
    granted = grants(role)
    # what the executor does in a profile's namespace: step pods, their logs, per-run claims, and the
    # headless Service of a distributed step; and the profile's endpoints (Deployment or InferenceService,
    # Service, token Secret: written, never read)
    assert granted == {("", "pods", v) for v in ("create", "get", "list", "watch", "delete", "patch")} | {
        ("", "pods/log", "get")} | {("", r, v) for r in ("persistentvolumeclaims", "services", "secrets")
                                    for v in ("create", "delete")} | {
        ("kubeflow.org", "pytorchjobs", v) for v in ("create", "get", "list", "watch", "delete")} | {  # kubeflow_job
        ("apps", "deployments", v) for v in ("create", "get", "patch", "delete")} | {
        ("serving.kserve.io", "inferenceservices", v) for v in ("create", "get", "patch", "delete")}
    assert granted <= home, f"more in profile {name} than the runner has at home: {granted - home}"
    binding = one(objects, "RoleBinding", "nbpipe-runner")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nbpipe-runner"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "nbpipe-runner", "namespace": NAMESPACE}]
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")


def test_profile_pods_find_the_names_the_runner_gives_them(profile: tuple[str, list[Obj]], base: list[Obj]) -> None:
    """The runner passes its step ServiceAccount and S3 Secret by name: the profile has both, under those names."""
    _, objects = profile
    env = env_of(containers(one(base, "Deployment", "nbpipe-runner"))[0])
    sa = one(objects, "ServiceAccount", env["NBPIPE_K8S_STEP_SERVICE_ACCOUNT"]["value"])
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["name"] not in {s["name"] for b in find(objects, "RoleBinding") for s in b["subjects"]
                                          if s.get("namespace") == sa["metadata"]["namespace"]}
    secret = one(objects, "Secret", env["NBPIPE_S3_CREDENTIALS_SECRET"]["value"])
    assert set(secret["data"]) == {"access-key", "secret-key"}


def test_profile_quota_is_covered_by_limit_range_defaults(profile: tuple[str, list[Obj]]) -> None:
    """A quota on requests/limits refuses pods that set none: the LimitRange gives every container them."""
    _, objects = profile
    hard = one(objects, "ResourceQuota", "compute")["spec"]["hard"]
    assert {"requests.cpu", "requests.memory", "limits.memory", "pods"} <= set(hard)
    (limits,) = one(objects, "LimitRange", "step-defaults")["spec"]["limits"]
    assert limits["type"] == "Container"
    for key in hard:
        kind, _, resource = key.partition(".")
        if kind in ("requests", "limits") and resource in ("cpu", "memory"):
            given = limits["defaultRequest" if kind == "requests" else "default"]
            assert resource in given, f"quota {key} but no LimitRange default for it"
    assert quantity(limits["defaultRequest"]["memory"]) <= quantity(limits["default"]["memory"])


def test_profiles_are_valid_placements_for_the_executor(tmp_path: Path) -> None:
    """The README's users-file example parses, and maps each overlay's profile to its namespace."""
    from nbpipe.runner.profiles import Placements

    readme = (CLUSTER / "README.md").read_text()
    block = re.search(r"```yaml\n(# users\.yaml.*?)```", readme, re.S)
    assert block, "cluster/README.md shows the users file with a profiles: section"
    path = tmp_path / "users.yaml"
    path.write_text(block.group(1))
    table = Placements(path)
    for name in PROFILES:
        placed = table.get(name)
        assert placed is not None and placed.namespace == profile_namespace(name)
    assert table.get("default") is None  # the default profile stays in the runner's namespace


# -- Dockerfiles -----------------------------------------------------------------------------


def dockerfile(name: str) -> tuple[str, dict[str, str]]:
    """The text of ``cluster/<name>/Dockerfile`` and its ARG defaults."""
    text = (CLUSTER / name / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    return text, args


@pytest.mark.parametrize("name", ["base-image", "runner-image"])
def test_images_default_to_this_python(name: str) -> None:
    text, args = dockerfile(name)
    assert args["PYTHON_VERSION"] == PYTHON, f"{name}: PYTHON_VERSION must be the kernel's ({PYTHON})"
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim$", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert "org.opencontainers.image.title" in text
    assert (CLUSTER / name / "Dockerfile.dockerignore").read_text().count(".venv") == 1


def test_base_image_runs_the_step_entrypoint_with_the_data_stack() -> None:
    # Versions come from requirements.lock: tests/test_reproducible.py checks the pins agree.
    text, _ = dockerfile("base-image")
    entrypoint = re.search(r'^ENTRYPOINT \["python", "-m", "([\w.]+)"\]$', text, re.M)
    assert entrypoint and importlib.util.find_spec(entrypoint.group(1)) is not None
    for package in ("cloudpickle", "dill", "minio", "numpy", "pandas", "pyarrow", "scikit-learn"):
        assert f'"{package}' in text, package
    assert "pip install --no-deps /tmp/nbpipe-src" in text


def test_runner_image_matches_the_deployment(base: list[Obj]) -> None:
    text, _ = dockerfile("runner-image")
    (container,) = containers(one(base, "Deployment", "nbpipe-runner"))
    assert 'CMD ["nbpipe", "runner", "start", "--host", "0.0.0.0", "--port", "8765"]' in text
    assert re.search(r"^EXPOSE 8765$", text, re.M) and container["ports"][0]["containerPort"] == 8765
    assert container["image"] == "nbpipe/runner:0.1.0"
    assert env_of(container)["NBPIPE_STEP_IMAGE"]["value"] == f"nbpipe/base:py{PYTHON}"


# -- binder ----------------------------------------------------------------------------------


def test_binder_post_build_installs_the_repo() -> None:
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK), "postBuild must be executable"
    text = post_build.read_text()
    assert text.startswith("#!/bin/bash") and "set -euo pipefail" in text
    assert re.search(r"pip install [^\n]*\"\.\[demo\]\"", text)
    subprocess.run(["bash", "-n", str(post_build)], check=True)
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert runtime == f"python-{dockerfile('base-image')[1]['PYTHON_VERSION']}"
