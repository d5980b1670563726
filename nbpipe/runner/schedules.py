"""Recurring runs and data triggers on the runner: cron, intervals and "new files arrived".

A schedule starts runs of an uploaded package: on a cron expression (``croniter``), every
``interval`` seconds, or when new files appear in a watched local folder or under a prefix of
the runner's store (the new paths/keys go to the pipeline parameter ``trigger["param"]``).

- ``max_concurrency``: a fire is skipped while that many runs of the schedule are active.
- ``catchup`` (off by default): after downtime the schedule fires once, not once per missed
  slot; with catch-up on, every missed slot fires (each still subject to ``max_concurrency``).
- The loop sleeps until the next fire time (woken early when schedules change); it does not
  busy-poll. Triggers do poll: a folder or store listing every ``trigger["poll"]`` seconds
  (default 5), a deliberately modest interval; files present when the trigger is created do
  not fire it.

Schedules live in the metadata database, so they survive restarts. Each run carries labels
``schedule`` (the id) and ``scheduled_for`` (the slot time), which gives fire jitter.
Non-goals: sub-second precision, calendars with time zones (cron runs in UTC), and
distributed locking between several runners sharing one database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import NbpipeError
from . import audit, db, profiles
from .auth import User

if TYPE_CHECKING:
    from .scheduler import Scheduler

log = logging.getLogger("nbpipe.runner")
DEFAULT_POLL = 5.0
MIN_INTERVAL = 0.5


def _cron_next(expr: str, after: float) -> float:
    try:
        from croniter import croniter
    except ImportError:
        raise NbpipeError("Cron schedules need the 'croniter' package",
                          hint="Install it: pip install croniter (or use interval=SECONDS).") from None
    return float(croniter(expr, after).get_next(float))


def check_cron(expr: str) -> None:
    _cron_next("* * * * *", 0.0)  # raises the install hint if croniter is missing
    from croniter import croniter

    if not croniter.is_valid(expr):
        raise NbpipeError(f"{expr!r} is not a cron expression",
                          hint="Use five fields: minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'.")


class Schedules:
    """Fires the runner's schedules; one asyncio task next to the :class:`Scheduler` loop."""

    def __init__(self, engine: sa.Engine, scheduler: "Scheduler"):
        self.engine = engine
        self.scheduler = scheduler
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._polled: dict[str, float] = {}  # trigger schedule id -> next listing time

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------ CRUD
    def create(self, package: str, name: str = "", params: dict[str, Any] | None = None,
               experiment: str = "Default", cron: str | None = None, interval: float | None = None,
               trigger: dict[str, Any] | None = None, max_concurrency: int = 1, catchup: bool = False,
               start_at: float | None = None, profile: str = "default") -> dict[str, Any]:
        """Validate and store a schedule; return it (see :func:`summary`)."""
        spec = self.scheduler.package_spec(package)
        if spec is None:
            raise NbpipeError(f"No package {package[:12]}… on this runner", hint="Upload it first (PUT /api/v1/packages).")
        kinds = [k for k, v in (("cron", cron), ("interval", interval), ("trigger", trigger)) if v]
        if len(kinds) != 1:
            raise NbpipeError(f"A schedule needs exactly one of cron, interval or trigger (got {', '.join(kinds) or 'none'})",
                              hint="e.g. cron='0 3 * * *', interval=3600, or trigger={'folder': '/data/in', 'param': 'files'}.")
        if cron:
            check_cron(cron)
        if interval is not None and interval < MIN_INTERVAL:
            raise NbpipeError(f"interval={interval} is too short", hint=f"Use at least {MIN_INTERVAL} seconds.")
        if max_concurrency < 1:
            raise NbpipeError("max_concurrency must be at least 1")
        params = dict(params or {})
        now = time.time()
        seen: list[str] = []
        if trigger:
            trigger = self._check_trigger(trigger, spec)
            seen = self._listing(trigger, profile)
        from ..pipeline import resolve_params

        probe = dict(params)
        if trigger:
            probe[trigger["param"]] = []
        resolve_params(spec["pipeline"]["name"], spec["pipeline"]["parameters"], probe)
        sid = "s" + secrets.token_hex(4)
        if start_at is not None:
            first = start_at
        elif interval:
            first = now + interval
        else:
            first = _cron_next(cron, now) if cron else now
        row = {"id": sid, "name": name or f"{spec['pipeline']['name']} schedule", "package": package,
               "pipeline": spec["pipeline"]["name"], "params": db.dumps(params), "experiment": experiment or "Default",
               "cron": cron or "", "interval": interval, "trigger": db.dumps(trigger or {}),
               "max_concurrency": max_concurrency, "catchup": bool(catchup), "paused": False,
               "next_fire_at": first, "last_fire_at": None, "fires": 0, "skipped": 0, "created_at": now,
               "profile": profile}
        with db.write_tx(self.engine) as conn:
            conn.execute(db.schedules.insert().values(**row))
            if seen:
                conn.execute(db.trigger_seen.insert(), [{"schedule_id": sid, "key": k} for k in seen])
        self.wake()
        return self.get(sid)  # type: ignore[return-value]

    def _check_trigger(self, trigger: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        t = dict(trigger)
        if bool(t.get("folder")) == bool(t.get("prefix") is not None and "prefix" in t):
            raise NbpipeError("A trigger watches either a local 'folder' or a store 'prefix'",
                              hint="Pass trigger={'folder': '/data/incoming', 'param': 'files'} or {'prefix': 'incoming/', ...}.")
        if t.get("folder") and not Path(t["folder"]).is_dir():
            raise NbpipeError(f"Trigger folder {t['folder']} does not exist on the runner's machine",
                              hint="Create it first; the runner watches folders it can list.")
        names = {p["name"] for p in spec["pipeline"]["parameters"]}
        if t.get("param") not in names:
            raise NbpipeError(f"Trigger parameter {t.get('param')!r} is not a parameter of pipeline "
                              f"'{spec['pipeline']['name']}'", f"Its parameters are: {', '.join(sorted(names)) or 'none'}.",
                              "Add a `files: list` parameter and name it in trigger['param'].")
        t["poll"] = float(t.get("poll") or DEFAULT_POLL)
        return t

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = db.rows(conn.execute(sa.select(db.schedules).where(*profiles.clauses(db.schedules.c.profile))
                                        .order_by(db.schedules.c.created_at)))
        return [self._summary(r) for r in rows]

    def get(self, sid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.schedules).where(db.schedules.c.id == sid)).first()
        return self._summary(dict(row._mapping)) if row else None

    def set_paused(self, sid: str, paused: bool) -> dict[str, Any] | None:
        values: dict[str, Any] = {"paused": paused}
        if not paused:  # resuming does not replay the paused time (unless catch-up is on)
            s = self.get(sid)
            if s and not s["catchup"] and s["next_fire_at"] < time.time():
                values["next_fire_at"] = self._following(s, time.time())
        with db.write_tx(self.engine) as conn:
            n = conn.execute(db.schedules.update().where(db.schedules.c.id == sid).values(**values)).rowcount
        self.wake()
        return self.get(sid) if n else None

    def delete(self, sid: str) -> bool:
        with db.write_tx(self.engine) as conn:
            conn.execute(db.trigger_seen.delete().where(db.trigger_seen.c.schedule_id == sid))
            n = conn.execute(db.schedules.delete().where(db.schedules.c.id == sid)).rowcount
        self.wake()
        return bool(n)

    def _summary(self, r: dict[str, Any]) -> dict[str, Any]:
        out = dict(r)
        out["params"] = db.loads(r["params"]) or {}
        out["trigger"] = db.loads(r["trigger"]) or {}
        out["kind"] = "cron" if r["cron"] else "interval" if r["interval"] else "trigger"
        out["active_runs"] = self._active(r["id"])
        return out

    def _active(self, sid: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(db.runs).where(
                db.runs.c.state.in_(["queued", "running"]),
                db.runs.c.labels.like(f'%"schedule": "{sid}"%'))).scalar() or 0)

    # ------------------------------------------------------------ firing
    @staticmethod
    def _following(s: dict[str, Any], after: float) -> float:
        """The first slot strictly after ``after``."""
        if s["cron"]:
            return _cron_next(s["cron"], after)
        step = float(s["interval"])
        n = int((after - s["next_fire_at"]) // step) + 1
        return float(s["next_fire_at"] + max(1, n) * step)

    async def _loop(self) -> None:
        while True:
            try:
                delay = self._tick(time.time())
            except Exception:  # noqa: BLE001 - a broken schedule must not stop the others
                log.exception("schedule tick failed")
                delay = 5.0
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, delay))
            except asyncio.TimeoutError:
                pass

    def _tick(self, now: float) -> float:
        """Fire what is due; return the seconds until something is due next."""
        nxt = 3600.0
        for s in self.list():
            if s["paused"]:
                continue
            if s["kind"] == "trigger":
                due = self._polled.get(s["id"], 0.0)
                if due <= now:
                    self._poll(s)
                    due = self._polled[s["id"]] = now + s["trigger"]["poll"]
                nxt = min(nxt, due - now)
                continue
            if s["next_fire_at"] <= now:
                slot = s["next_fire_at"]
                if s["catchup"]:
                    following = self._following(s, slot)
                else:
                    following = self._following(s, now)
                self._fire(s, slot, {})
                with db.write_tx(self.engine) as conn:
                    conn.execute(db.schedules.update().where(db.schedules.c.id == s["id"])
                                 .values(next_fire_at=following))
                s["next_fire_at"] = following
            nxt = min(nxt, s["next_fire_at"] - now)
        return nxt

    def _fire(self, s: dict[str, Any], slot: float, extra: dict[str, Any]) -> str | None:
        if s["active_runs"] >= s["max_concurrency"]:
            with db.write_tx(self.engine) as conn:
                conn.execute(db.schedules.update().where(db.schedules.c.id == s["id"])
                             .values(skipped=db.schedules.c.skipped + 1))
            log.info("schedule %s: skipped the %.0f slot, %d run(s) still active", s["id"], slot, s["active_runs"])
            return None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(slot))
        with self.scheduler.transaction():  # the run's rows and its first events commit together
            run_id = self.scheduler.create_run(
                s["package"], {**s["params"], **extra}, s["experiment"], name=f"{s['name']} {stamp}",
                labels={"schedule": s["id"], "scheduled_for": repr(slot)}, profile=s.get("profile") or "default")
        audit.record(self.engine, User(f"schedule {s['id']}", "system"), "submit", s.get("profile") or "default",
                     run_id, {"schedule": s["id"], "scheduled_for": slot})
        s["active_runs"] += 1
        with db.write_tx(self.engine) as conn:
            conn.execute(db.schedules.update().where(db.schedules.c.id == s["id"])
                         .values(last_fire_at=time.time(), fires=db.schedules.c.fires + 1))
        return run_id

    def _listing(self, trigger: dict[str, Any], profile: str | None = None) -> list[str]:
        if trigger.get("folder"):
            root = Path(trigger["folder"])
            out = []
            for dirpath, _dirs, files in os.walk(root):
                out += [os.path.join(dirpath, f) for f in files if not f.startswith(".")]
            return sorted(out)
        return sorted(self.scheduler.stores.of(profile).list(trigger["prefix"]))  # the schedule's profile's view

    def _poll(self, s: dict[str, Any]) -> None:
        """List the watched folder/prefix; new entries start one run with their paths."""
        try:
            listing = self._listing(s["trigger"], s.get("profile"))
        except OSError as exc:
            log.warning("schedule %s: cannot list %s (%s)", s["id"], s["trigger"], exc)
            return
        with self.engine.connect() as conn:
            seen = {r[0] for r in conn.execute(sa.select(db.trigger_seen.c.key)
                                               .where(db.trigger_seen.c.schedule_id == s["id"]))}
        new = [k for k in listing if k not in seen]
        if not new:
            return
        if self._fire(s, time.time(), {s["trigger"]["param"]: new}) is None:
            return  # busy: the same files fire on a later poll
        with db.write_tx(self.engine) as conn:
            conn.execute(db.trigger_seen.insert(), [{"schedule_id": s["id"], "key": k} for k in new])

