"""HTTP routes for schedules and data triggers (``/api/v1/schedules``), mounted by :mod:`.server`.

Non-goals: firing logic (see :mod:`.schedules`).
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..errors import NbpipeError
from .api_models import Deleted, Digest, JsonObject, Schedule, Text, errors
from .schedules import Schedules


class ScheduleRequest(BaseModel):
    package: Digest = Field(description="sha256 digest of an uploaded package")
    name: Text(300) = ""  # type: ignore[valid-type]
    params: JsonObject = Field(default_factory=dict)
    experiment: Text(200) = "Default"  # type: ignore[valid-type]
    cron: Text(200) | None = Field(None, description="cron expression (UTC), e.g. '*/5 * * * *'")  # type: ignore[valid-type]
    interval: float | None = Field(None, description="seconds between runs", gt=0, le=10 * 365 * 86400,
                                   allow_inf_nan=False)
    trigger: JsonObject | None = Field(
        None, description="{'folder': PATH | 'prefix': STORE_PREFIX, 'param': NAME, 'poll': SECONDS}")
    max_concurrency: int = Field(1, ge=1, le=10_000)
    catchup: bool = False
    start_at: float | None = Field(None, ge=0, le=1e11, allow_inf_nan=False)


def schedule_router(schedules: Callable[[], Schedules], error: Callable[[int, Any], JSONResponse]) -> APIRouter:
    """The schedule routes; ``schedules()`` returns the running :class:`Schedules`."""
    r = APIRouter(prefix="/api/v1/schedules")

    @r.post("", status_code=201, responses={201: {"model": Schedule}, **errors(400, 404)})
    async def create(req: ScheduleRequest) -> Any:
        try:
            from .profiles import note, submit_profile

            out = schedules().create(**req.model_dump(), profile=submit_profile())
            note(target=out["id"])
            return out
        except NbpipeError as exc:
            return error(400, exc)

    @r.get("", responses={200: {"model": list[Schedule]}})
    async def list_schedules() -> list[dict[str, Any]]:
        return schedules().list()

    @r.get("/{sid}", responses={200: {"model": Schedule}, **errors(404)})
    async def get(sid: str) -> Any:
        return schedules().get(sid) or error(404, f"No schedule {sid}")

    @r.post("/{sid}/pause", responses={200: {"model": Schedule}, **errors(404)})
    async def pause(sid: str) -> Any:
        return schedules().set_paused(sid, True) or error(404, f"No schedule {sid}")

    @r.post("/{sid}/resume", responses={200: {"model": Schedule}, **errors(404)})
    async def resume(sid: str) -> Any:
        return schedules().set_paused(sid, False) or error(404, f"No schedule {sid}")

    @r.delete("/{sid}", responses={200: {"model": Deleted}, **errors(404)})
    async def delete(sid: str) -> Any:
        return {"id": sid, "deleted": True} if schedules().delete(sid) else error(404, f"No schedule {sid}")

    return r
