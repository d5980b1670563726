"""What the Kubernetes API's refusals mean for a step: a quota refusal (a clear failure naming the
profile and quota, never a retry loop) or another API error (what to fix: RBAC, namespace, API
server). Shared by the pod executor, gangs, PyTorchJobs and endpoints on Kubernetes."""

from __future__ import annotations

import json
import re

from ..errors import NbpipeError


def _detail(exc: Exception) -> str:
    detail = getattr(exc, "reason", "") or str(exc)
    try:
        detail = json.loads(getattr(exc, "body", "") or "{}").get("message") or detail
    except ValueError:
        pass
    return str(detail)


_EXCEEDED = re.compile(r"exceeded quota: (?P<quota>[^,]+), requested: (?P<requested>.*?), used: (?P<used>.*?), "
                       r"limited: (?P<limited>.*)$")
_MUST_SPECIFY = re.compile(r"failed quota: (?P<quota>[^:]+): must specify (?P<what>.*)$")


def quota_refusal(exc: Exception, profile: str, namespace: str) -> str | None:
    """The step's failure reason when the API server refused its pod for a ResourceQuota, else None."""
    if getattr(exc, "status", None) != 403:
        return None
    detail = _detail(exc)
    m = _EXCEEDED.search(detail)
    if m:
        return (f"profile '{profile}' is out of its ResourceQuota '{m['quota']}' (namespace {namespace}): "
                f"requested {m['requested']}, already used {m['used']}, limit {m['limited']}; "
                "ask an admin to raise the quota, or lower the step's resources (or wait for the profile's "
                "other steps to finish)")
    m = _MUST_SPECIFY.search(detail)
    if m:
        return (f"profile '{profile}': its ResourceQuota '{m['quota']}' (namespace {namespace}) needs every pod "
                f"to set {m['what']}; give the step resources=Resources(...) or ask an admin for a LimitRange "
                "with defaults in that namespace")
    if "quota" in detail:
        return f"profile '{profile}': a ResourceQuota in namespace {namespace} refused the step's pod: {detail}"
    return None


def api_error(exc: Exception, doing: str, namespace: str) -> NbpipeError:
    status = getattr(exc, "status", None)
    detail = _detail(exc)
    if status == 403:
        hint = (f"Give the runner's ServiceAccount the Role in cluster/manifests/base/rbac.yaml "
                f"(pods, pods/log, persistentvolumeclaims in namespace {namespace}); for a profile's "
                f"namespace apply its overlay, cluster/manifests/profiles/<profile>.")
    elif status == 404:
        hint = f"Check that namespace {namespace} exists (NBPIPE_K8S_NAMESPACE)."
    else:
        hint = "Check the API server and the runner's kubeconfig / service account."
    return NbpipeError(f"Kubernetes refused to {doing} (HTTP {status}): {detail}", hint=hint)
