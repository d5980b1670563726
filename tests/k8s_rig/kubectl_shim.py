"""The few kubectl calls ``k8s-rig.sh start`` makes, for machines without kubectl.

``run.py`` puts a ``kubectl`` that runs this (with the venv's Python and its ``kubernetes``
package) first on ``PATH`` only when there is no kubectl. Supported, as the rig script uses them:

    kubectl --kubeconfig F get --raw /readyz
    kubectl --kubeconfig F -n NS get serviceaccount NAME
    kubectl --kubeconfig F wait --for=condition=Ready node/NAME --timeout=5s
    kubectl --kubeconfig F get nodes

Anything else exits 2 naming the call. Non-goal: being kubectl.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    from kubernetes import client, config

    kubeconfig, namespace, rest = None, "default", []
    it = iter(argv)
    for arg in it:
        if arg == "--kubeconfig":
            kubeconfig = next(it)
        elif arg.startswith("--kubeconfig="):
            kubeconfig = arg.split("=", 1)[1]
        elif arg == "-n":
            namespace = next(it)
        else:
            rest.append(arg)
    cfg = client.Configuration()
    config.load_kube_config(kubeconfig, client_configuration=cfg)
    api = client.ApiClient(cfg)
    core = client.CoreV1Api(api)
    try:
        if rest[:2] == ["get", "--raw"]:
            resp = api.call_api(rest[2], "GET", _preload_content=False, auth_settings=["BearerToken"])
            data = (resp[0] if isinstance(resp, tuple) else resp).data
            print(data.decode())
        elif rest[:2] == ["get", "serviceaccount"]:
            print(core.read_namespaced_service_account(rest[2], namespace).metadata.name)
        elif rest == ["get", "nodes"]:
            for node in core.list_node().items:
                ready = {c.type: c.status for c in node.status.conditions or []}.get("Ready")
                print(node.metadata.name, "Ready" if ready == "True" else "NotReady")
        elif rest[:1] == ["wait"] and "--for=condition=Ready" in rest:
            name = next(a for a in rest if a.startswith("node/")).split("/", 1)[1]
            timeout = float(next((a.split("=")[1].rstrip("s") for a in rest if a.startswith("--timeout=")), "30"))
            deadline = time.monotonic() + timeout
            while True:
                try:
                    node = core.read_node(name)
                    if {c.type: c.status for c in node.status.conditions or []}.get("Ready") == "True":
                        print(f"node/{name} condition met")
                        return 0
                except client.exceptions.ApiException:
                    pass
                if time.monotonic() > deadline:
                    return 1
                time.sleep(0.5)
        else:
            print(f"kubectl shim: unsupported call: kubectl {' '.join(argv)}", file=sys.stderr)
            return 2
    except client.exceptions.ApiException as exc:
        print(f"Error from server: {exc.status} {exc.reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
