"""The runner API's documented shapes: request limits and response models for the OpenAPI document.

Responses are declared (``responses=``) rather than filtered through these models at run time,
so a snapshot is served as built (see :mod:`.views`); the models say what clients may rely on.
Request fields are bounded here, at the edge: string lengths (the database columns' sizes, on
SQLite and PostgreSQL alike), no NUL characters, nesting depth and integer ranges — bad input
gets a 4xx, never a 5xx. Non-goal: the event vocabulary (see :mod:`nbpipe.events`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_INT = 2**53  # JSON-safe, and far below the 2**63 - 1 SQLite and PostgreSQL integers hold
MAX_DEPTH = 32
NO_NUL = r"^[^\x00]*$"

Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def Text(max_length: int) -> Any:  # noqa: N802 - a type factory
    return Annotated[str, StringConstraints(max_length=max_length, pattern=NO_NUL)]


def _depth(value: Any, limit: int = MAX_DEPTH) -> Any:
    from ..package import json_depth

    if json_depth(value) > limit:
        raise ValueError(f"nested more than {limit} levels deep")
    if "\\u0000" in _dumps(value):
        raise ValueError("contains a NUL character")
    return value


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


JsonObject = Annotated[dict[str, Any], AfterValidator(_depth)]


class RunRequest(BaseModel):
    package: Digest = Field(description="sha256 digest of an uploaded package")
    params: JsonObject = Field(default_factory=dict)
    experiment: Text(200) = "Default"  # type: ignore[valid-type]
    name: Text(300) | None = None  # type: ignore[valid-type]
    labels: dict[Text(100), Text(1000)] = Field(default_factory=dict, max_length=100)  # type: ignore[valid-type]


class ErrorBody(BaseModel):
    """Every 4xx/5xx the runner sends itself: what happened, and what to do."""

    error: str
    detail: Any = ""
    hint: str = ""
    message: str = ""
    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str = Field(description="'ok', or 'stalled' (with 503) when the scheduling loop is not ticking")
    version: str
    executor: str
    store: str | None = None
    active_runs: int
    running_steps: int
    parallelism: int
    pid: int
    loop: dict[str, Any]
    model_config = ConfigDict(extra="allow")


class PackageInfo(BaseModel):
    digest: str
    name: str
    size: int
    parameters: list[dict[str, Any]]


class StepView(BaseModel):
    name: str
    component: str
    state: str
    attempt: int
    max_attempts: int
    upstream: list[str]
    reason: str
    traceback: str
    cached: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    model_config = ConfigDict(extra="allow")


class RunSummary(BaseModel):
    id: str
    name: str
    pipeline: str
    experiment: str
    state: str
    reason: str
    params: dict[str, Any]
    labels: dict[str, Any]
    package: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: float | None
    archived_at: float | None = None
    model_config = ConfigDict(extra="allow")


class RunSnapshot(RunSummary):
    last_event_id: int
    steps: list[StepView]


class RunStorage(BaseModel):
    """What archiving, restoring or deleting a run did."""

    id: str
    state: str
    archived: bool | None = None
    archived_at: float | None = None
    deleted: bool | None = None


class CancelResult(BaseModel):
    id: str
    cancelling: bool
    state: str


class Experiment(BaseModel):
    name: str
    runs: int
    last_run_at: float | None


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the runner's own error bodies."""
    text = {400: "Bad input (what is wrong, and what to do)", 401: "No or wrong token",
            403: "Refused Host or Origin (DNS rebinding, a cross-site request)", 404: "Not found", 409: "Not now (e.g. the run is still running)",
            413: "Too large", 503: "The scheduling loop is not running", 507: "The runner's disk is full"}
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}  # see server.py
    return {c: {"content": body, "description": text.get(c, "Error")} for c in codes}


class Schedule(BaseModel):
    id: str
    name: str
    package: str
    pipeline: str
    params: dict[str, Any]
    experiment: str
    cron: str | None = None
    interval: float | None = None
    trigger: dict[str, Any] | None = None
    max_concurrency: int
    catchup: bool
    paused: bool
    next_fire_at: float | None = None
    last_fire_at: float | None = None
    fires: int
    skipped: int
    created_at: float
    profile: str
    kind: str
    model_config = ConfigDict(extra="allow")


class Deleted(BaseModel):
    id: str
    deleted: bool


class EndpointVersion(BaseModel):
    version: str
    digest: str
    size: int
    created_at: float
    description: str
    source: dict[str, Any]
    model: dict[str, Any]
    seq: int
    default: bool
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Endpoint(BaseModel):
    name: str
    url: str | None = None
    token: str = Field(description="the endpoint's own token (what its model server accepts), never the runner's")
    port: int | None = None
    state: str
    reason: str
    default_version: str
    versions: list[EndpointVersion]
    pid: int | None = None
    restarts: int
    created_at: float
    updated_at: float
    profile: str
    infer_url: str | None = None
    model_config = ConfigDict(extra="allow")


class EndpointDeleted(BaseModel):
    deleted: str


class WhoAmI(BaseModel):
    name: str
    role: str
    profiles: list[str]
    default_profile: str


class AuditEntry(BaseModel):
    id: int
    ts: float
    user: str
    role: str
    action: str
    profile: str
    target: str
    detail: Any = None
    model_config = ConfigDict(extra="allow")


class RunPage(BaseModel):
    total: int
    limit: int
    offset: int
    last_event_id: int
    runs: list[RunSummary]
    facets: dict[str, Any] | None = None
    model_config = ConfigDict(extra="allow")


class Lineage(BaseModel):
    run: str
    step: str
    state: str
    artifacts: list[dict[str, Any]]
    model_config = ConfigDict(extra="allow")
