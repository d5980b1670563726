"""Standby pods: step pods started before their step, warm, handed their job through the store.

A pod that imports scikit-learn and pandas spends 1-2.5 s of its step doing so; a local step
forks from a zygote that imported them once. Like Knative's or OpenWhisk's prewarmed containers,
the Kubernetes executor keeps up to ``NBPIPE_K8S_PREWARM`` pods per runner warming for the steps
a run will start next (the scheduler says which: :meth:`StandbyPool.upcoming`), each with exactly
the pod spec its step would get (image, packages and their cache mount, resources, ServiceAccount,
namespace of the profile, the run's claim if any, secrets, the component's ``env=``) but no job yet. Its
entrypoint imports the component's packages and polls the store for its job
(:mod:`.k8s_standby_pod`). Still one pod per step attempt, which runs exactly one step and ends.

Binding (:meth:`StandbyPool.start`, from ``KubernetesExecutor.start``): the job goes to the store
under a key named after the pod (``runs/<run>/standby/<pod>.json``), then a merge patch gives the
pod its attempt's labels and annotations (``nbpipe.io/attempt-id``, run, step, attempt,
``nbpipe.io/standby: bound``; a waiting pod has no run label, so ``-l nbpipe.io/run=R`` lists R's step pods
only, and says which run it was started for in ``nbpipe.io/standby-for``) and the step's ``activeDeadlineSeconds``: from then on the watch,
logs, kill, :meth:`~.kubernetes.KubernetesExecutor.reattach` after a runner restart and the
run's claim release treat it as any step pod. The pod's step-specific variables (``NBPIPE_RUN_ID``,
``NBPIPE_STEP``, ``NBPIPE_ATTEMPT``) come with the job, which the entrypoint applies before the step
runs; the profile's (``NBPIPE_PROFILE``) is in its spec from the start, as in a normal pod's.

The next run starts warm too (the notebook loop: run, fix a cell, run again). Without per-run
claims a standby pod is not tied to its run: when a run ends, the pool keeps its unused pods,
and tops up to as many of each of its pod specs as it wanted at once, for the next run of the
same steps (:meth:`StandbyPool.run_finished`), replacing none after ``idle`` seconds or once
another run starts; a pod that no run wants gives its place to one that is wanted.

No attempt is lost to a pod that gives up waiting: a pod waits ``idle`` seconds (counted from its
own start) and reads the key once more before it exits; the runner counts the same ``idle`` from
before it asked for the pod (which cannot start earlier), offers only pods with a margin left,
and after the job is in the store checks the clock again: a job stored in time is always read; a
late one goes to a new normal pod (the standby pod is deleted). Unused standby pods are deleted
when their run finishes (or is cancelled) unless kept for the next run, and when the runner stops;
if the runner dies they exit 0 on their own after ``idle`` seconds. They are never steps or
attempts (no row, no event).

Non-goals: a pod running more than one step (isolation: each still runs exactly one), standby pods
for distributed steps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .base import Handle
from .k8s_errors import api_error
from .k8s_pod import (
    ANNOTATION_ATTEMPT_ID,
    LABEL_ATTEMPT,
    LABEL_RUN,
    LABEL_STEP,
    PodSettings,
    build_pod,
    dns_name,
    label_value,
)
from .k8s_watch import classify

if TYPE_CHECKING:
    from .kubernetes import KubernetesExecutor

log = logging.getLogger("nbpipe.executors.kubernetes")

LABEL_STANDBY = "nbpipe.io/standby"  # "waiting" until bound to an attempt, then "bound"
ANNOTATION_STANDBY_FOR = "nbpipe.io/standby-for"  # the run whose steps it was started for
PATCH = "application/merge-patch+json"
# the job brings these (a standby pod may serve the next run); the profile is in the spec key, so in the pod's spec
STEP_ENV = ("NBPIPE_RUN_ID", "NBPIPE_STEP", "NBPIPE_ATTEMPT")
AFTER = "after:"  # wanted-list owner of the pods kept warm for the next run of a finished run's steps
LOOKAHEAD = 32  # pending steps the scheduler describes at each step start (see nbpipe.runner.attempts)


def spec_key(job: dict[str, Any], per_run: bool) -> str:
    """What makes two steps' pods the same: profile (namespace, ServiceAccount, Secret), image, packages,
    resources, the component's env=, store; and with a per-run claim (``per_run``), the run."""
    env = {k: v for k, v in (job.get("env") or {}).items() if k not in STEP_ENV}
    return json.dumps([job["run_id"] if per_run else "", job.get("image") or "", list(job.get("packages") or ()),
                       job.get("resources") or {}, env, job.get("store"), job.get("profile") or "default"],
                      sort_keys=True, default=str)


def prewarmable(job: dict[str, Any]) -> bool:
    """Single-pod steps only (a distributed step's pods are a gang, see k8s_gang)."""
    return int(job.get("workers") or 1) <= 1


@dataclass
class Standby:
    name: str
    namespace: str
    key: str
    owner: str  # its entry in StandbyPool.wanted: the run, or AFTER + run once that run ended
    job_key: str
    log_end: str
    t0: float  # time.monotonic() before the pod was asked for: it cannot have started earlier
    pod: dict[str, Any] = field(default_factory=dict)  # as the watch last saw it


class StandbyPool:
    """The executor's standby pods; see the module docstring."""

    def __init__(self, executor: KubernetesExecutor, settings: PodSettings):
        self.ex = executor
        self.size = max(0, int(settings.prewarm))
        self.idle = float(settings.standby_idle)
        self.poll = float(settings.standby_poll)
        self.margin = min(30.0, max(2.0, self.idle / 4))  # offered only with this much of its idle time left
        self.pods: dict[str, Standby] = {}
        self.wanted: dict[str, dict[str, dict[str, Any]]] = {}  # owner -> spec key -> {"job", "n"}
        self.seen: dict[str, dict[str, dict[str, Any]]] = {}  # run -> spec key -> {"job", "n": most wanted at once}
        self.until: dict[str, float] = {}  # AFTER owner -> monotonic time its pods stop being replaced
        self.per_run = bool(settings.run_volume_size)  # steps mount their run's claim: no sharing
        self._creating = 0
        self._topping: asyncio.Task[None] | None = None
        self._closed = False
        self.made = 0  # pods created, and bound to attempts (for tests and benchmarks)
        self.bound = 0

    # ------------------------------------------------------------------ what is coming
    def upcoming(self, run_id: str, jobs: list[dict[str, Any]]) -> None:
        """The run's next steps to start (jobs without inputs), replacing what it said before."""
        if not self.size or self._closed:
            return
        if run_id not in self.seen:  # a new run: the last run's pods serve it, but are no longer replaced
            for owner in [o for o in self.wanted if o.startswith(AFTER)]:
                self.wanted.pop(owner, None)
                self.until.pop(owner, None)
        want: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if not prewarmable(job):
                continue
            key = spec_key(job, self.per_run)
            entry = want.setdefault(key, {"job": job, "n": 0})
            entry["n"] += 1
        self.wanted[run_id] = want
        seen = self.seen.setdefault(run_id, {})
        for key, entry in want.items():
            if entry["n"] >= seen.get(key, {}).get("n", 0):
                seen[key] = dict(entry)
        self._top_up_soon()

    def _top_up_soon(self) -> None:
        if self._topping is None or self._topping.done():
            self._topping = asyncio.ensure_future(self._top_up())

    async def _top_up(self) -> None:
        while not self._closed:
            have: dict[str, int] = {}
            for p in self.pods.values():
                if self._usable(p):
                    have[p.key] = have.get(p.key, 0) + 1
            now = time.monotonic()
            for owner in [o for o, t in self.until.items() if now >= t]:  # no next run came: let them idle out
                self.until.pop(owner, None)
                self.wanted.pop(owner, None)
            job, owner = None, ""
            for owner, want in list(self.wanted.items()):
                for key, entry in want.items():
                    if entry["n"] > have.get(key, 0):
                        job = entry["job"]
                        break
                if job is not None:
                    break
            if job is None:
                return
            if len(self.pods) + self._creating >= self.size:
                spare = next((p for p in self.pods.values() if p.owner not in self.wanted), None)
                if spare is None:
                    return
                await self._delete(spare)  # a finished run's pod nobody wants any more makes room
                continue
            try:
                await self._create(job, owner)
            except Exception as exc:  # noqa: BLE001 - prewarm is an optimisation: the step gets a normal pod
                log.warning("could not start a standby pod for run %s: %s", job.get("run_id"), exc)
                self.wanted.pop(owner, None)  # not again for this run
                return

    async def _create(self, job: dict[str, Any], owner: str) -> None:
        ex = self.ex
        settings = await asyncio.to_thread(ex.place, job)
        ns = settings.namespace
        run_id = str(job["run_id"])
        self._creating += 1
        try:
            await ex._ready(ns)
            if settings.run_volume_size:
                await ex._ensure_claim(run_id, settings)
                ex._run_ns.setdefault(run_id, ns)
            name = dns_name("nbp-standby", run_id, secrets.token_hex(4))
            ref = {"standby": {"job_key": f"runs/{run_id}/standby/{name}.json", "idle": self.idle, "poll": self.poll},
                   "store": job["store"], "packages": list(job.get("packages") or ()),
                   "imports": list(job.get("imports") or ()), "component": job.get("component", ""),
                   "log_end": secrets.token_hex(8)}
            template = {k: job.get(k) for k in ("run_id", "component", "image", "packages", "resources", "profile")}
            template.update(step="standby", attempt=0,
                            env={k: v for k, v in (job.get("env") or {}).items() if k not in STEP_ENV})
            pod = build_pod(template, name, settings, timeout=None, job_ref=ref)
            meta = pod["metadata"]
            meta["name"] = name
            meta["labels"].pop(LABEL_STEP, None)
            meta["labels"].pop(LABEL_ATTEMPT, None)
            meta["labels"].pop(LABEL_RUN, None)  # a run's pods are its steps' (binding adds it): it may serve the next run
            meta["labels"][LABEL_STANDBY] = "waiting"
            meta["annotations"][ANNOTATION_STANDBY_FOR] = run_id
            meta["annotations"].pop(ANNOTATION_ATTEMPT_ID, None)
            sb = Standby(name, ns, spec_key(job, self.per_run), owner,
                         ref["standby"]["job_key"], ref["log_end"], time.monotonic())
            self.pods[name] = sb
            try:
                await asyncio.to_thread(ex.api.create_namespaced_pod, ns, pod, _preload_content=False)
            except Exception as exc:
                self.pods.pop(name, None)
                raise api_error(exc, f"create standby pod {name}", ns) from None
            self.made += 1
        finally:
            self._creating -= 1
        if self._closed or owner not in self.wanted:  # the run ended (or the runner stops) meanwhile
            await self._delete(sb)

    def _usable(self, p: Standby, now: float | None = None) -> bool:
        return (now or time.monotonic()) < p.t0 + self.idle - self.margin and classify(p.pod) is None \
            and not (p.pod.get("metadata") or {}).get("deletionTimestamp")

    # ------------------------------------------------------------------ handing a step to one
    async def start(self, job: dict[str, Any], attempt_id: str, log_path: str, settings: PodSettings) -> Handle | None:
        """Bind a waiting standby pod of ``job``'s spec to this attempt; ``None``: start a normal pod."""
        if not self.size or not self.pods or not prewarmable(job):
            return None
        key = spec_key(job, self.per_run)
        now = time.monotonic()
        sb = next((p for p in self.pods.values() if p.key == key and self._usable(p, now)), None)
        if sb is None:
            return None
        del self.pods[sb.name]
        self._top_up_soon()  # its successor warms while this step runs
        ex = self.ex
        job["log_end"] = sb.log_end  # the pod's stand-in job carries it (reattach reads it there)
        try:
            await asyncio.to_thread(ex._put_job, job, sb.job_key)
        except BaseException:
            await asyncio.shield(self._delete(sb))
            raise
        if time.monotonic() >= sb.t0 + self.idle:  # stored too late to be sure the pod reads it
            log.warning("standby pod %s: the job was stored after its idle time; a new pod runs %s", sb.name, attempt_id)
            await self._delete(sb)
            return None
        from .kubernetes import _Attempt

        name, ns = sb.name, sb.namespace
        handle = Handle(attempt_id, name=name if ns == ex.settings.namespace else f"{ns}/{name}",
                        extra={"standby": True})
        att = _Attempt(handle, name, ns, log_path, job["log_key"], job["store"], log_end=sb.log_end)
        ex._attempts[name] = att
        body: dict[str, Any] = {"metadata": {
            "labels": {LABEL_RUN: label_value(str(job["run_id"])), LABEL_STEP: label_value(str(job["step"])),
                       LABEL_ATTEMPT: str(int(job["attempt"])), LABEL_STANDBY: "bound"},
            "annotations": {ANNOTATION_ATTEMPT_ID: attempt_id, "nbpipe.io/component": str(job.get("component", ""))}}}
        if job.get("timeout"):  # the backstop deadline a normal pod gets, counted from this pod's start
            body["spec"] = {"activeDeadlineSeconds": int(_running_for(sb.pod) + float(job["timeout"])
                                                         + ex.settings.deadline_margin) + 1}
        try:
            resp = await asyncio.to_thread(ex.api.patch_namespaced_pod, name, ns, body,
                                           _content_type=PATCH, _preload_content=False)
        except Exception as exc:
            ex._attempts.pop(name, None)
            if getattr(exc, "status", None) == 404:  # gone (deleted by someone): a normal pod runs the step
                return None
            raise api_error(exc, f"bind standby pod {name}", ns) from None
        self.bound += 1
        handle.extra["created"] = time.monotonic()
        ex._on_pod("SYNC", json.loads(resp.data))  # e.g. its container runs already: follow its log now
        return handle

    # ------------------------------------------------------------------ the watch
    def on_pod(self, kind: str, pod: dict[str, Any]) -> bool:
        """A watch event of a pod no attempt has: True if it is a standby pod (kept up to date)."""
        sb = self.pods.get((pod.get("metadata") or {}).get("name", ""))
        if sb is None or (pod.get("metadata") or {}).get("namespace", sb.namespace) != sb.namespace:
            return False
        sb.pod = pod
        if kind == "DELETED" or classify(pod) is not None:  # idled out, crashed or deleted: replace it
            self.pods.pop(sb.name, None)
            if kind != "DELETED":
                asyncio.ensure_future(self._delete(sb))
            self._top_up_soon()
        return True

    def on_sync(self, names: set[str], listed_at: float, namespace: str) -> None:
        for sb in list(self.pods.values()):
            if sb.namespace == namespace and sb.name not in names and sb.t0 < listed_at and sb.pod:
                self.on_pod("DELETED", sb.pod)

    # ------------------------------------------------------------------ the end
    async def run_finished(self, run_id: str, state: str = "succeeded") -> None:
        """The run's standby pods nobody took go, unless they can serve its next run (no per-run claim,
        and the run was not cancelled).

        Then the notebook's edit-run loop starts its next run warm: for ``idle`` seconds, the pool keeps
        as many pods of each of the run's pod specs as the run wanted at once (up to its size) ready for
        the next run of the same steps, and replaces none after that: unused, they exit by themselves."""
        self.wanted.pop(run_id, None)
        seen = self.seen.pop(run_id, {})
        after = AFTER + run_id
        if seen and not self.per_run and not self._closed and state in ("succeeded", "failed"):
            for old in [o for o in self.wanted if o.startswith(AFTER)]:  # the newest finished run's only
                self.wanted.pop(old, None)
                self.until.pop(old, None)
            self.wanted[after] = {k: {"job": e["job"], "n": min(e["n"], self.size)} for k, e in seen.items()}
            self.until[after] = time.monotonic() + max(0.0, self.idle - 2 * self.margin)
        gone = []
        for p in list(self.pods.values()):
            if p.owner == run_id and after in self.wanted:
                p.owner = after  # kept for the next run
            elif p.owner == run_id or (p.owner.startswith(AFTER) and p.owner not in self.wanted):
                gone.append(p)
                self.pods.pop(p.name, None)
        await asyncio.gather(*(self._delete(p) for p in gone), return_exceptions=True)
        if self.wanted:
            self._top_up_soon()  # their places go to other runs' steps, or to this run's next run

    async def close(self) -> None:
        """Delete every standby pod (a runner that stops hands no job to them)."""
        self._closed = True
        self.wanted.clear()
        self.until.clear()
        if self._topping is not None and not self._topping.done():
            await asyncio.gather(self._topping, return_exceptions=True)
        gone, self.pods = list(self.pods.values()), {}
        await asyncio.gather(*(self._delete(p) for p in gone), return_exceptions=True)

    async def _delete(self, sb: Standby) -> None:
        self.pods.pop(sb.name, None)
        await self.ex._delete_pod(sb.name, sb.namespace, grace=0)


def _running_for(pod: dict[str, Any]) -> float:
    """Seconds since the pod started (its ``activeDeadlineSeconds`` counts from then); 0 if not yet."""
    started = (pod.get("status") or {}).get("startTime")
    if not started:
        return 0.0
    try:
        t = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(timezone.utc) - t).total_seconds())
