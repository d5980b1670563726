"""The runner's Role grants exactly what the runner used in a whole ``k8s`` suite run on a real API server.

Run by ``tests/k8s_rig/run.py`` (``make test-k8s``) after the suite, with the API server's audit log
(``NBPIPE_TEST_AUDIT_LOG``; Metadata level: user, verb, resource, response code of every request)
and the name of a marker request the driver made last (``NBPIPE_TEST_AUDIT_MARKER``: everything
before it is in the log). Not collected by ``make test``: its file name is not ``test_*.py``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from test_cluster_manifests import MANIFESTS, render

RUNNER = "system:serviceaccount:nbpipe:nbpipe-runner"

Grant = tuple[str, str, str]  # apiGroup, resource[/subresource], verb


def used_by(log: Path, user: str, marker: str) -> tuple[Counter[Grant], list[str]]:
    """What ``user`` asked for (counted), and its refused requests, from an audit log."""
    used: Counter[Grant] = Counter()
    refused = []
    for line in log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if event["user"]["username"] != user or ref.get("name") == marker:
            continue
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used[(ref.get("apiGroup", ""), resource, event["verb"])] += 1
        code = (event.get("responseStatus") or {}).get("code", 0)
        if code in (401, 403):
            refused.append(f"{event['verb']} {event['requestURI']} -> {code}")
    return used, refused


def granted() -> set[Grant]:
    (role,) = [o for o in render(MANIFESTS) if o["kind"] == "Role" and o["metadata"]["name"] == "nbpipe-runner"]
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


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
