"""The runner's Roles grant exactly what the runner used in a whole ``k8s`` suite run on a real API
server, and the runner touched no namespace but its own and the profiles' it is bound in.

Run by ``tests/k8s_rig/run.py`` (``make test-k8s``) after the suite, with the API server's audit log
(``NBPIPE_TEST_AUDIT_LOG``; Metadata level: user, verb, resource, namespace, response code of every
request) and the name of a marker request the driver made last (``NBPIPE_TEST_AUDIT_MARKER``:
everything before it is in the log). Not collected by ``make test``: its file name is not ``test_*.py``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from test_cluster_manifests import MANIFESTS, NAMESPACE, PROFILES, render

RUNNER = "system:serviceaccount:nbpipe:nbpipe-runner"

Grant = tuple[str, str, str]  # apiGroup, resource[/subresource], verb


def events(log: Path, user: str, marker: str) -> list[dict[str, Any]]:
    """The audit events of ``user``'s requests (not the driver's marker request)."""
    out = []
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if (event.get("user") or {}).get("username") == user and (event.get("objectRef") or {}).get("name") != marker:
            out.append(event)
    return out


def refused_by_rbac(event: dict[str, Any]) -> bool:
    """401, or a 403 the authorizer gave (a quota's 403 comes after an "allow": admission, not RBAC)."""
    code = (event.get("responseStatus") or {}).get("code", 0)
    decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
    return code == 401 or (code == 403 and decision != "allow")


def used_by(log: Path, user: str, marker: str, namespace: str | None = NAMESPACE) -> tuple[Counter[Grant], list[str]]:
    """What ``user`` asked for in ``namespace`` (None: anywhere), counted, and its RBAC-refused requests."""
    used: Counter[Grant] = Counter()
    refused = []
    for event in events(log, user, marker):
        ref = event.get("objectRef") or {}
        if namespace is not None and ref.get("namespace") != namespace:
            continue
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used[(ref.get("apiGroup", ""), resource, event["verb"])] += 1
        if refused_by_rbac(event):
            refused.append(f"{event['verb']} {event['requestURI']} -> {event['responseStatus']['code']}")
    return used, refused


def grants(role: dict[str, Any]) -> set[Grant]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def granted() -> set[Grant]:
    (role,) = [o for o in render(MANIFESTS) if o["kind"] == "Role" and o["metadata"]["name"] == "nbpipe-runner"]
    return grants(role)


def profile_roles() -> dict[str, set[Grant]]:
    """``{namespace: grants}`` of the runner's Role in each profile overlay."""
    out = {}
    for folder in PROFILES.values():
        for obj in render(folder):
            if obj["kind"] == "Role" and obj["metadata"]["name"] == "nbpipe-runner":
                out[obj["metadata"]["namespace"]] = grants(obj)
    return out


def test_the_runner_role_grants_exactly_the_verbs_the_suite_used() -> None:
    log = Path(os.environ["NBPIPE_TEST_AUDIT_LOG"])
    used, refused = used_by(log, RUNNER, os.environ["NBPIPE_TEST_AUDIT_MARKER"])
    print("\nrunner requests in the k8s suite:", dict(sorted(used.items())))
    assert not refused, f"the runner was refused: {refused}"
    assert used, f"no request of {RUNNER} in {log}: did the suite run as the runner's ServiceAccount?"
    unused = granted() - set(used)
    missing = set(used) - granted()
    assert not unused and not missing, (
        f"cluster/manifests/base/rbac.yaml grants {sorted(unused)} the runner never used, "
        f"and lacks {sorted(missing)} it used")


def test_the_runner_touched_no_namespace_it_should_not() -> None:
    """Every request of the runner names its own namespace or a profile's it is bound in: no other
    namespace, no cluster-scoped request (no list across namespaces, no namespaces, no nodes)."""
    log = Path(os.environ["NBPIPE_TEST_AUDIT_LOG"])
    marker = os.environ["NBPIPE_TEST_AUDIT_MARKER"]
    roles = profile_roles()
    allowed = {NAMESPACE, *roles}
    outside = [f"{e['verb']} {e['requestURI']} -> {(e.get('responseStatus') or {}).get('code')}"
               for e in events(log, RUNNER, marker) if (e.get("objectRef") or {}).get("namespace") not in allowed]
    assert not outside, f"the runner made requests outside {sorted(allowed)}: {outside[:20]}"
    touched = []
    for ns, grant in sorted(roles.items()):
        used, refused = used_by(log, RUNNER, marker, ns)
        print(f"\nrunner requests in profile namespace {ns}:", dict(sorted(used.items())))
        assert not refused, f"the runner was refused in {ns}: {refused}"
        assert set(used) <= grant, f"the runner used {sorted(set(used) - grant)} in {ns}, beyond its Role there"
        touched += [ns] if used else []
    # the suite's profile test (tests/k8s/test_profiles_k8s.py) placed pods in two profiles' namespaces
    assert len(touched) >= 2, f"the runner worked in profile namespaces {touched} only: did the profile test run?"
