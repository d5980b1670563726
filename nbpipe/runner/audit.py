"""The audit log: who submitted, cancelled, re-ran or deployed what, and when.

The HTTP middleware (:mod:`.server`) records every successful change (POST/PUT/DELETE answered
below 400) with the caller, the profile, the action named from the route, its target (the path's
ids, or the run a submit created) — one row per request, written after the response is decided.
A schedule's runs are recorded as submitted by ``schedule <id>`` (role ``system``); who made the
schedule is in its ``schedule`` record. ``GET /api/v1/audit`` (admins only) and ``nbpipe audit`` read it.
Non-goals: reads are not recorded (too many; a proxy's access log has them).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import sqlalchemy as sa

from . import db
from .auth import User

# (method, route path) -> action
ACTIONS = {
    ("POST", "/api/v1/runs"): "submit",
    ("POST", "/api/v1/runs/{run_id}/cancel"): "cancel",
    ("POST", "/api/v1/runs/{run_id}/rerun"): "rerun",
    ("POST", "/api/v1/runs/{run_id}/archive"): "archive",
    ("POST", "/api/v1/runs/{run_id}/unarchive"): "unarchive",
    ("DELETE", "/api/v1/runs/{run_id}"): "delete-run",
    ("PUT", "/api/v1/packages/{digest}"): "upload",
    ("POST", "/api/v1/schedules"): "schedule",
    ("DELETE", "/api/v1/schedules/{sid}"): "unschedule",
    ("POST", "/api/v1/schedules/{sid}/pause"): "pause",
    ("POST", "/api/v1/schedules/{sid}/resume"): "resume",
    ("PUT", "/api/v1/endpoints/{name}/versions"): "deploy",
    ("POST", "/api/v1/endpoints/{name}/rollback"): "rollback",
    ("DELETE", "/api/v1/endpoints/{name}/versions/{version}"): "delete-version",
    ("DELETE", "/api/v1/endpoints/{name}"): "undeploy",
}
CHANGES = ("POST", "PUT", "DELETE", "PATCH")


def action_for(method: str, route_path: str) -> str:
    return ACTIONS.get((method, route_path)) or f"{method.lower()} {route_path}"


def record(engine: sa.Engine, user: User, action: str, profile: str, target: str,
           detail: dict[str, Any] | None = None, conn: sa.Connection | None = None) -> None:
    """Write one audit row; in ``conn``'s transaction when given (a submit's row commits with its run)."""
    if conn is None:
        with db.write_tx(engine) as own:
            record(engine, user, action, profile, target, detail, own)
        return
    db.insert(conn, db.audit, {"ts": time.time(), "user": user.name[:128], "role": user.role, "action": action[:40],
                        "profile": profile[:63], "target": target[:400], "detail": db.dumps(detail or {})})




def query(engine: sa.Engine, user: str | None = None, action: str | None = None, profile: str | None = None,
          target: str | None = None, since: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
    q = sa.select(db.audit).order_by(db.audit.c.id.desc()).limit(limit)
    for col, value in ((db.audit.c.user, user), (db.audit.c.action, action), (db.audit.c.profile, profile),
                       (db.audit.c.target, target)):
        if value:
            q = q.where(col == value)
    if since is not None:
        q = q.where(db.audit.c.ts >= since)
    with engine.connect() as conn:
        out = db.rows(conn.execute(q))
    for r in out:
        r["detail"] = db.loads(r["detail"]) or {}
    return out


def audit_router(engine: Callable[[], sa.Engine], error: Callable[[int, Any], Any]) -> Any:
    import asyncio

    from fastapi import APIRouter, Query

    from ..errors import NbpipeError
    from . import profiles
    from .api_models import AuditEntry, WhoAmI, errors

    router = APIRouter()

    @router.get("/api/v1/audit", description="Who changed what (admins only), newest first.",
                responses={200: {"model": list[AuditEntry]}, **errors(403)})
    async def get_audit(user: str | None = Query(None, max_length=128), action: str | None = Query(None, max_length=40),
                        profile: str | None = Query(None, max_length=63),
                        target: str | None = Query(None, max_length=400),
                        since: float | None = Query(None, ge=0, le=1e11),
                        limit: int = Query(100, ge=1, le=10_000)) -> Any:
        caller = profiles.current()
        if caller is not None and not caller.admin:
            return error(403, NbpipeError("The audit log is for admins",
                                          hint="Ask an admin of this runner (role: admin in its users file)."))
        return await asyncio.to_thread(query, engine(), user, action, profile, target, since, limit)

    @router.get("/api/v1/whoami", description="The caller: name, role and profiles.",
                responses={200: {"model": WhoAmI}})
    async def whoami() -> Any:
        caller = profiles.current()
        return caller.public() if caller is not None else None

    return router
