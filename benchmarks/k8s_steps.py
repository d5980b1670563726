"""Pod steps against the pod floor, on a real API server: ``python tests/k8s_rig/run.py --bench``.

Prints three numbers (and writes them as JSON with ``--out``):

- **floor**: create a pod running ``python3 -c pass`` and watch it to ``Succeeded`` (median of N);
  what any Kubernetes client pays per pod on this cluster;
- **nbpipe per step**: a 10-step chain of trivial steps (``x + 1``, cache off) through a runner
  with the Kubernetes executor and an S3 store (moto on loopback), run wall time / 10 (median of
  the repeats; the first run, which starts the watch, is a warm-up);
- their **ratio**, and the overhead per step (per step - floor);
- and, to split that overhead, a pod that only imports what a step's entrypoint imports.

``--ab TREE`` runs the chain through two runners side by side, run after run in turn under the same
load: A on TREE's nbpipe (runner and pods; e.g. ``git archive <commit> nbpipe`` unpacked there) and B
on this tree, and prints each one's per step, overhead and split (the machine's load moves a single
run's numbers more than most changes do).

``--digits`` instead runs the digits example (``nbpipe.examples.digits``) on the rig twice, each time
through a fresh runner and store prefix (no result cache), and once through a local runner, and
prints wall times, step times and the accuracy: the image (this ``.venv``) has the kernel's pinned
scikit-learn/pandas/pyarrow, so no pod installs anything.

Needs the environment ``tests/k8s_rig/run.py`` sets (``NBPIPE_TEST_KUBECONFIG``: the runner's
ServiceAccount; ``NBPIPE_TEST_ADMIN_KUBECONFIG``; ``NBPIPE_TEST_NAMESPACE``; S3 keys), so the
runner has only its Role, as in ``cluster/``. Non-goal: numbers for a remote cluster's network.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from nbpipe import component, pipeline  # noqa: E402


@component(cache=False)
def inc(x: int) -> int:
    return x + 1


@pipeline
def chain10(x: int = 0):
    v = inc(x=x).output
    for _ in range(9):
        v = inc(x=v).output


def chain_of(comp: Any) -> Any:
    """chain10 with another ``inc`` (e.g. one whose pods run an older tree, for ``--ab``)."""

    @pipeline(name="chain10")
    def chain(x: int = 0):
        v = comp(x=x).output
        for _ in range(9):
            v = comp(x=v).output

    return chain


def _api(kubeconfig: str) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(kubeconfig, client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


IMPORTS = "import nbpipe.executors.entry, nbpipe.stores.s3_light, cloudpickle"  # what a step on S3 imports


def pod_floor(api: Any, namespace: str, n: int, command: list[str] | None = None) -> list[float]:
    """Seconds from create to ``Succeeded`` (seen on a watch) of ``n`` pods running ``python3 -c pass``."""
    from kubernetes import watch

    command = command or ["python3", "-c", "pass"]
    out = []
    label = f"floor-{uuid.uuid4().hex[:6]}"
    for i in range(n):
        name = f"nbpipe-floor-{label}-{i}"
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"nbpipe.io/bench": label}},
                "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                         "containers": [{"name": "c", "image": "python:3-slim",
                                         "command": command}]}}
        rv = api.list_namespaced_pod(namespace, label_selector=f"nbpipe.io/bench={label}").metadata.resource_version
        w = watch.Watch()
        t0 = time.perf_counter()
        api.create_namespaced_pod(namespace, body)
        for ev in w.stream(api.list_namespaced_pod, namespace, label_selector=f"nbpipe.io/bench={label}",
                           resource_version=rv, timeout_seconds=60):
            pod = ev["object"]
            if pod.metadata.name == name and pod.status.phase in ("Succeeded", "Failed"):
                out.append(time.perf_counter() - t0)
                w.stop()
        api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    return out


def nbpipe_chain(repeats: int, namespace: str, phases: dict[str, list[float]] | None = None,
                 ) -> tuple[list[float], list[float]]:
    """Per-step seconds of each timed chain run, and the step durations (StepStarted -> StepFinished).

    ``phases`` gets each step's split on the runner's and the pod's clocks (one machine on the rig):
    ``to_pod`` (StepStarted -> the entrypoint's first line, after imports), ``in_pod`` (-> its result
    written) and ``back`` (-> StepFinished: log upload, exit, status, watch, result read).
    """
    from runner_process import RunnerProcess
    from test_store_s3 import start_moto, stop

    from nbpipe import events as ev

    proc, url = start_moto()
    data = Path(tempfile.mkdtemp(prefix="nbpipe-k8s-bench-"))
    env = {"NBPIPE_EXECUTOR": "kubernetes", "KUBECONFIG": os.environ["NBPIPE_TEST_KUBECONFIG"],
           "NBPIPE_K8S_NAMESPACE": namespace, "NBPIPE_STORE": "s3", "NBPIPE_S3_ENDPOINT": url,
           "NBPIPE_S3_BUCKET": "nbpipe-bench", "NBPIPE_S3_ACCESS_KEY": os.environ["NBPIPE_TEST_S3_ACCESS_KEY"],
           "NBPIPE_S3_SECRET_KEY": os.environ["NBPIPE_TEST_S3_SECRET_KEY"],
           "NBPIPE_K8S_SECRET_ENV": "NBPIPE_S3_ACCESS_KEY=nbpipe-s3:access-key,NBPIPE_S3_SECRET_KEY=nbpipe-s3:secret-key",
           "NBPIPE_K8S_STEP_SERVICE_ACCOUNT": os.environ.get("NBPIPE_TEST_STEP_SERVICE_ACCOUNT", "")}
    if os.environ.get("NBPIPE_BENCH_RUNNER_PYTHONPATH"):  # A/B: the runner (and the pod specs it makes) from elsewhere
        env["PYTHONPATH"] = os.environ["NBPIPE_BENCH_RUNNER_PYTHONPATH"]
    runner = RunnerProcess(data, extra_env=env).start()
    per_step, durations = [], []
    try:
        client = runner.client()
        client.submit(chain10).wait(timeout=300)  # warm-up: credentials, watch, imports
        for _ in range(repeats):
            t0 = time.perf_counter()
            run = client.submit(chain10).wait(timeout=300)
            per_step.append((time.perf_counter() - t0) / 10)
            assert run.state == "succeeded" and max(run.output(s) for s in run.steps) == 10
            started = {e.step: e.ts for e in run.events(follow=False) if isinstance(e, ev.StepStarted)}
            durations += [e.ts - started[e.step] for e in run.events(follow=False)
                          if isinstance(e, ev.StepFinished) and e.step in started]
            if phases is not None:
                _phases(run, env, phases)
    finally:
        runner.stop()
        stop(proc)
    return per_step, durations


def ab_chain(tree: str, repeats: int, namespace: str) -> dict[str, Any]:
    """``--ab TREE``: the chain through a runner and pods running TREE (an older checkout's nbpipe, A)
    and through this tree (B), run after run in turn under the same load; per-step seconds and phases."""
    from runner_process import RunnerProcess
    from test_store_s3 import start_moto, stop

    proc, url = start_moto()
    runners, chains = {}, {}
    try:
        for label, path in (("A", tree), ("B", "")):
            env = _k8s_env(namespace, url, f"ab-{label}-{uuid.uuid4().hex[:6]}")
            comp = inc
            if path:
                env["PYTHONPATH"] = path
                comp = component(cache=False, env={"PYTHONPATH": path})(inc.func)  # the pods too
            runners[label] = RunnerProcess(Path(tempfile.mkdtemp(prefix=f"nbpipe-k8s-ab{label}-")), extra_env=env).start()
            chains[label] = chain_of(comp)
            runners[label].client().submit(chains[label]).wait(timeout=300)  # warm-up
        out: dict[str, Any] = {label: {"per_step": [], "phases": {}} for label in runners}
        for _ in range(repeats):
            for label in ("A", "B"):
                t0 = time.perf_counter()
                run = runners[label].client().submit(chains[label]).wait(timeout=300)
                out[label]["per_step"].append((time.perf_counter() - t0) / 10)
                assert run.state == "succeeded"
                _phases(run, runners[label].extra_env, out[label]["phases"])
        return out
    finally:
        for r in runners.values():
            r.stop()
        stop(proc)


def _phases(run: Any, env: dict[str, str], out: dict[str, list[float]]) -> None:
    from nbpipe import events as ev
    from nbpipe.stores.s3 import S3Store

    store = S3Store(env["NBPIPE_S3_ENDPOINT"], env["NBPIPE_S3_BUCKET"], prefix=env.get("NBPIPE_S3_PREFIX", ""),
                    access_key=env["NBPIPE_S3_ACCESS_KEY"], secret_key=env["NBPIPE_S3_SECRET_KEY"])
    events = list(run.events(follow=False))
    started = {e.step: e.ts for e in events if isinstance(e, ev.StepStarted)}
    finished = {e.step: e.ts for e in events if isinstance(e, ev.StepFinished)}
    for step, t0 in started.items():
        result = json.loads(store.get_bytes(f"runs/{run.id}/{step}/1/result.json"))
        for name, value in (("to_pod", result["started_at"] - t0), ("in_pod", result["finished_at"] - result["started_at"]),
                            ("back", finished[step] - result["finished_at"])):
            out.setdefault(name, []).append(value)


def _k8s_env(namespace: str, url: str, prefix: str) -> dict[str, str]:
    return {"NBPIPE_EXECUTOR": "kubernetes", "KUBECONFIG": os.environ["NBPIPE_TEST_KUBECONFIG"],
            "NBPIPE_K8S_NAMESPACE": namespace, "NBPIPE_STORE": "s3", "NBPIPE_S3_ENDPOINT": url,
            "NBPIPE_S3_BUCKET": "nbpipe-bench", "NBPIPE_S3_PREFIX": prefix,
            "NBPIPE_S3_ACCESS_KEY": os.environ["NBPIPE_TEST_S3_ACCESS_KEY"],
            "NBPIPE_S3_SECRET_KEY": os.environ["NBPIPE_TEST_S3_SECRET_KEY"],
            "NBPIPE_K8S_SECRET_ENV": "NBPIPE_S3_ACCESS_KEY=nbpipe-s3:access-key,NBPIPE_S3_SECRET_KEY=nbpipe-s3:secret-key",
            "NBPIPE_K8S_STEP_SERVICE_ACCOUNT": os.environ.get("NBPIPE_TEST_STEP_SERVICE_ACCOUNT", "")}


THINK = 5.0  # seconds between a run and the next, in the digits bench (a user editing a cell)


def _digits_once(env: dict[str, str]) -> dict[str, Any]:
    """One digits run through a fresh runner: wall seconds, step seconds, accuracy, installs seen; then,
    as ``edit_rerun``, the notebook loop's next run on the same runner, ``THINK`` seconds later (the
    user's edit; the same pause on every side): ``test_size`` edited, so ``load_digits_data`` is reused
    and the four steps after it run again."""
    from runner_process import RunnerProcess

    from nbpipe import events as ev
    from nbpipe.examples.digits import digits

    data = Path(tempfile.mkdtemp(prefix="nbpipe-digits-bench-"))
    runner = RunnerProcess(data, extra_env=env).start()
    try:
        client = runner.client()
        t0 = time.perf_counter()
        run = client.submit(digits).wait(timeout=900)
        wall = time.perf_counter() - t0
        events = list(run.events(follow=False))
        started = {e.step: e.ts for e in events if isinstance(e, ev.StepStarted)}
        finished = {e.step: e.ts for e in events if isinstance(e, ev.StepFinished) and e.step in started}
        steps = {step: round(ts - started[step], 2) for step, ts in finished.items()}
        out = {"wall_s": round(wall, 2), "steps_s": steps, "accuracy": run.outputs("evaluate")["accuracy"],
               "installs": [s for s in run.steps if "installing" in run.logs(s)],
               "first_start_to_last_finish_s": round(max(finished.values()) - min(started.values()), 2),
               "phases_s": _step_phases(run.id, started, finished, env, data)}
        time.sleep(THINK)
        t0 = time.perf_counter()
        again = client.submit(digits, {"test_size": 0.3}).wait(timeout=900)
        wall = time.perf_counter() - t0
        events = list(again.events(follow=False))
        started = {e.step: e.ts for e in events if isinstance(e, ev.StepStarted)}
        finished = {e.step: e.ts for e in events if isinstance(e, ev.StepFinished) and e.step in started}
        out["edit_rerun"] = {"wall_s": round(wall, 2), "steps_s": {k: round(v - started[k], 2) for k, v in finished.items()},
                             "reused": sorted(k for k, v in again.steps.items() if v["state"] == "cached"),
                             "phases_s": _step_phases(again.id, started, finished, env, data)}
        return out
    finally:
        runner.stop()


def _step_phases(run_id: str, started: dict[str, float], finished: dict[str, float], env: dict[str, str],
                 data: Path) -> dict[str, dict[str, float]]:
    """Each step's split, from its result.json (the pod's clock is the runner's on the rig): ``start``
    (StepStarted -> the entrypoint's first line: pod create, schedule, Python start, nbpipe imports;
    locally the fork), ``setup`` (package/pin checks, payload, inputs), ``call`` (the user's function:
    its imports of pandas/sklearn and its work), ``save`` (outputs to the store), ``end`` (-> StepFinished)."""
    if env.get("NBPIPE_STORE") == "s3":
        from nbpipe.stores.s3 import S3Store

        store = S3Store(env["NBPIPE_S3_ENDPOINT"], env["NBPIPE_S3_BUCKET"], prefix=env.get("NBPIPE_S3_PREFIX", ""),
                        access_key=env["NBPIPE_S3_ACCESS_KEY"], secret_key=env["NBPIPE_S3_SECRET_KEY"])

        def read(step: str) -> bytes:
            return store.get_bytes(f"runs/{run_id}/{step}/1/result.json")
    else:
        def read(step: str) -> bytes:
            return next(data.rglob(f"runs/{run_id}/{step}/1/result.json")).read_bytes()
    out = {}
    for step, t0 in started.items():
        try:
            r = json.loads(read(step))
        except (KeyError, StopIteration):
            continue
        timing = r.get("timing") or {}
        out[step] = {"start": r["started_at"] - t0, "setup": timing.get("setup", 0.0), "call": timing.get("call", 0.0),
                     "save": timing.get("save", 0.0), "end": finished[step] - r["finished_at"]}
        out[step] = {k: round(v, 3) for k, v in out[step].items()}
    return out


def digits_bench(namespace: str, prewarm: list[int]) -> dict[str, Any]:
    """Local once, then for each standby-pod setting (``NBPIPE_K8S_PREWARM``) a first and a second run."""
    from test_store_s3 import start_moto, stop

    proc, url = start_moto()
    out: dict[str, Any] = {}
    try:
        load = os.getloadavg()[0]
        out["local"] = {**_digits_once({}), "load_before": round(load, 2)}
        for n in prewarm:
            for i in (1, 2):
                load = os.getloadavg()[0]
                env = {**_k8s_env(namespace, url, uuid.uuid4().hex[:8]), "NBPIPE_K8S_PREWARM": str(n)}
                out[f"k8s_prewarm{n}_run{i}"] = {**_digits_once(env), "load_before": round(load, 2)}
    finally:
        stop(proc)
    print("\n| digits | wall s | x local | step seconds | accuracy | pods that installed packages | load before |"
          "\n|---|---|---|---|---|---|---|")
    for what, r in out.items():
        print(f"| {what} | {r['wall_s']:.1f} | {r['wall_s'] / out['local']['wall_s']:.2f} | {r['steps_s']} | "
              f"{r['accuracy']:.4f} | {r['installs'] or 'none'} | {r['load_before']} |")
    print("\n| digits, next run after an edit (same runner) | wall s | x local | steps reused | step seconds |"
          "\n|---|---|---|---|---|")
    for what, r in out.items():
        e = r["edit_rerun"]
        print(f"| {what} | {e['wall_s']:.1f} | {e['wall_s'] / out['local']['edit_rerun']['wall_s']:.2f} | "
              f"{', '.join(e['reused']) or 'none'} | {e['steps_s']} |")
    print("\n| digits step | where | start | setup | call | save | end | total |\n|---|---|---|---|---|---|---|---|")
    for what, r in [*out.items(), *((f"{k} next run", v["edit_rerun"]) for k, v in out.items())]:
        for step, ph in r["phases_s"].items():
            print(f"| {step} | {what} | " + " | ".join(f"{ph[k]:.2f}" for k in ("start", "setup", "call", "save", "end"))
                  + f" | {r['steps_s'].get(step, 0):.2f} |")
    out["load_1min"] = os.getloadavg()[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, default=20, help="floor pods")
    ap.add_argument("--repeats", type=int, default=3, help="timed chain runs")
    ap.add_argument("--out", help="write the numbers as JSON here")
    ap.add_argument("--digits", action="store_true", help="time the digits example instead (see above)")
    ap.add_argument("--prewarm", default="", help="NBPIPE_K8S_PREWARM (standby pods) for the runners: one value for "
                                                  "the chain, a comma list for --digits (default: 0 and the executor's default)")
    ap.add_argument("--ab", metavar="TREE", help="A/B: the chain with runner and pods on TREE's nbpipe (A) and on "
                                                 "this tree's (B), run after run in turn (e.g. a `git archive` of the last commit)")
    args = ap.parse_args()
    namespace = os.environ.get("NBPIPE_TEST_NAMESPACE", "nbpipe")
    if args.digits:
        from nbpipe.executors.k8s_pod import DEFAULT_PREWARM

        result = digits_bench(namespace, [int(x) for x in (args.prewarm or f"0,{DEFAULT_PREWARM}").split(",")])
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
        return 0
    if args.prewarm:
        os.environ["NBPIPE_K8S_PREWARM"] = args.prewarm  # (the runners started here inherit it)
    if args.ab:
        load0 = os.getloadavg()[0]
        admin = _api(os.environ["NBPIPE_TEST_ADMIN_KUBECONFIG"])
        floor = pod_floor(admin, namespace, args.pods)
        ab = ab_chain(args.ab, args.repeats, namespace)
        f = statistics.median(floor)
        load = round((load0 + os.getloadavg()[0]) / 2, 2)
        print(f"\n| A/B (A: {args.ab}, B: this tree), floor {f:.3f} s, load {load} | per step | overhead | "
              "to pod | in pod | back |\n|---|---|---|---|---|---|")
        for label, r in ab.items():
            s = statistics.median(r["per_step"])
            ph = {k: statistics.median(v) for k, v in r["phases"].items()}
            r.update(per_step_median=s, overhead=s - f, phases_median=ph)
            print(f"| {label} | {s:.3f} | {s - f:.3f} | {ph['to_pod']:.3f} | {ph['in_pod']:.3f} | {ph['back']:.3f} |")
        if args.out:
            Path(args.out).write_text(json.dumps({"floor_s": f, "floor_all_s": floor, "load_1min": load, **ab}, indent=1))
        return 0
    from nbpipe.executors.k8s_pod import BOOTSTRAP

    admin = _api(os.environ["NBPIPE_TEST_ADMIN_KUBECONFIG"])
    load0 = os.getloadavg()[0]
    floor = pod_floor(admin, namespace, args.pods)
    probe = Path(tempfile.mkdtemp(prefix="nbpipe-bench-probe-")) / "nbpipe_bench_probe.py"
    probe.write_text(IMPORTS + "\n")
    imports = pod_floor(admin, namespace, max(5, args.pods // 2),  # as a step pod starts (see k8s_pod.BOOTSTRAP)
                        ["/bin/sh", "-c", f"cd {probe.parent} && exec python -c '{BOOTSTRAP}' -m nbpipe_bench_probe"])
    phases: dict[str, list[float]] = {}
    per_step, durations = nbpipe_chain(args.repeats, namespace, phases)
    load = (load0 + os.getloadavg()[0]) / 2
    f, s, i = statistics.median(floor), statistics.median(per_step), statistics.median(imports)
    result = {"floor_s": f, "floor_all_s": floor, "nbpipe_step_s": s, "nbpipe_step_all_s": per_step,
              "imports_pod_s": i, "step_duration_median_s": statistics.median(durations), "overhead_s": s - f,
              "ratio": s / f, "phases_median_s": {k: statistics.median(v) for k, v in phases.items()},
              "load_1min": round(load, 2), "cpus": os.cpu_count()}
    print("\n| what | seconds |\n|---|---|")
    print(f"| pod floor (python3 -c pass, create -> Succeeded on a watch), median of {len(floor)} | {f:.3f} |")
    print(f"| a pod that only imports what a step imports ({IMPORTS}, through the pod's bootstrap), "
          f"median of {len(imports)} | {i:.3f} |")
    print(f"| nbpipe per step (10-step chain, wall / 10), median of {len(per_step)} runs | {s:.3f} |")
    print(f"| step start -> finish (runner events), median | {result['step_duration_median_s']:.3f} |")
    for name, what in (("to_pod", "StepStarted -> the pod's entrypoint runs (create, schedule, start, imports)"),
                       ("in_pod", "entrypoint: payload, call, outputs and result in the store"),
                       ("back", "result written -> StepFinished (log upload, exit, pod status, watch, result read)")):
        print(f"| {what}, median | {result['phases_median_s'][name]:.3f} |")
    print(f"| nbpipe overhead per step (per step - floor) | {s - f:.3f} |")
    print(f"| ratio per step / floor | {s / f:.1f}x |")
    print(f"| load average (1 min, mean of start and end; {os.cpu_count()} CPUs) | {load:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
