"""The one event vocabulary shared by the runner, the client, the CLI, the widget and the Lab panel.

Events are frozen dataclasses with a JSON codec (:func:`encode` / :func:`decode`). The runner
stores them in its metadata database with increasing integer ids and streams them as
Server-Sent Events (``id:`` is the event id, ``event:`` the type, ``data:`` the JSON), so a
consumer resumes with ``Last-Event-ID``. ``nbpipe/widgets/run_view.js`` and the Lab panel's
``events.ts`` mirror these names and fields.

Non-goals: carrying payloads (artifacts are referenced by digest) or commands (events only
describe what happened).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

# States, in one place.
RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
RUN_FINAL = frozenset({"succeeded", "failed", "cancelled"})
STEP_STATES = ("pending", "running", "retrying", "succeeded", "cached", "failed", "cancelled", "skipped")
STEP_FINAL = frozenset({"succeeded", "cached", "failed", "cancelled", "skipped"})
STEP_OK = frozenset({"succeeded", "cached"})


@dataclass(frozen=True)
class Event:
    """Common fields: the run, a wall-clock timestamp and the id the runner gave the event."""

    type: ClassVar[str] = "Event"
    run_id: str
    ts: float
    id: int = 0


@dataclass(frozen=True)
class RunCreated(Event):
    """A run was accepted; ``graph`` lists steps (name, component, display_name, upstream)."""

    type: ClassVar[str] = "RunCreated"
    name: str = ""
    pipeline: str = ""
    experiment: str = "Default"
    params: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunStarted(Event):
    type: ClassVar[str] = "RunStarted"


@dataclass(frozen=True)
class RunFinished(Event):
    """The run reached ``succeeded``, ``failed`` or ``cancelled``."""

    type: ClassVar[str] = "RunFinished"
    state: str = "succeeded"
    reason: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class StepStarted(Event):
    type: ClassVar[str] = "StepStarted"
    step: str = ""
    attempt: int = 1
    max_attempts: int = 1


@dataclass(frozen=True)
class StepRetrying(Event):
    """Attempt ``attempt`` failed; attempt ``attempt + 1`` starts after ``delay`` seconds."""

    type: ClassVar[str] = "StepRetrying"
    step: str = ""
    attempt: int = 1
    max_attempts: int = 1
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class StepLog(Event):
    """New lines a step attempt wrote to ``stream`` (``stdout`` or ``stderr``)."""

    type: ClassVar[str] = "StepLog"
    step: str = ""
    attempt: int = 1
    stream: str = "stdout"
    text: str = ""


@dataclass(frozen=True)
class ArtifactSaved(Event):
    """A step output was stored; ``preview`` is a small JSON description for display."""

    type: ClassVar[str] = "ArtifactSaved"
    step: str = ""
    name: str = ""
    digest: str = ""
    kind: str = "value"
    format: str = ""
    size: int = 0
    preview: dict[str, Any] | None = None


@dataclass(frozen=True)
class StepFinished(Event):
    """A step reached a final state; failures carry ``reason`` and the user's ``traceback``."""

    type: ClassVar[str] = "StepFinished"
    step: str = ""
    state: str = "succeeded"
    attempt: int = 1
    duration: float = 0.0
    reason: str = ""
    traceback: str = ""


@dataclass(frozen=True)
class StepsAdded(Event):
    """A ``ParallelFor`` loop expanded at run time: ``steps`` joined the graph (same shape as
    ``RunCreated.graph["steps"]``, with ``group`` = the loop id), one set per item of ``items``."""

    type: ClassVar[str] = "StepsAdded"
    loop: str = ""
    items: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StepWorkers(Event):
    """The workers of a distributed step's attempt (``workers=N``) changed state: one entry per rank,
    ``{rank, pid, state, exit_code}`` with state ``starting``, ``running``, ``succeeded``, ``failed``,
    ``stopped`` (by the gang, after another worker failed, or by cancel/timeout) or ``not started``."""

    type: ClassVar[str] = "StepWorkers"
    step: str = ""
    attempt: int = 1
    workers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StepWaiting(Event):
    """The step waits for an identical step (same code and inputs: the same cache key) that is running
    now, step ``waiting_for_step`` of run ``waiting_for_run``, and will reuse its result; ``reason``
    says so (the step's reason in the snapshot). The step keeps its state (``pending``, or
    ``retrying`` for a retry); its start or final state replaces the reason."""

    type: ClassVar[str] = "StepWaiting"
    step: str = ""
    reason: str = ""
    waiting_for_run: str = ""
    waiting_for_step: str = ""


@dataclass(frozen=True)
class RunStorage(Event):
    """The run was archived, brought back to the run lists, or deleted (Kubeflow's run storage state;
    see :mod:`nbpipe.runner.run_storage`). ``storage``: ``archived``, ``available`` or ``deleted``. Run
    lists reload on it; a deleted run's other events are gone, this one stays (the lists' last word)."""

    type: ClassVar[str] = "RunStorage"
    storage: str = "archived"


@dataclass(frozen=True)
class UnknownEvent(Event):
    """An event of a type this nbpipe does not know, e.g. from a newer runner: consumers skip it (its
    ``id`` still moves a stream's resume point past it). ``name`` is the type the runner sent and
    ``data`` the event as sent. Not part of the vocabulary (:data:`EVENT_TYPES`)."""

    type: ClassVar[str] = "UnknownEvent"
    name: str = ""
    data: dict[str, Any] = field(default_factory=dict)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (RunCreated, RunStarted, RunFinished, StepStarted, StepRetrying, StepLog, ArtifactSaved, StepFinished,
                StepsAdded, StepWorkers, StepWaiting, RunStorage)
}


def encode(event: Event) -> dict[str, Any]:
    """Turn an event into a JSON-ready dict with a ``type`` key (an :class:`UnknownEvent`: as it was sent)."""
    if isinstance(event, UnknownEvent):
        return {**event.data, "id": event.id}
    data = dataclasses.asdict(event)
    data["type"] = event.type
    return data


def decode(data: dict[str, Any] | str | bytes) -> Event:
    """Build an event from :func:`encode`'s dict (or its JSON text); unknown fields are ignored.

    An unknown type (a newer runner's event read by an older client) is an :class:`UnknownEvent`,
    which consumers skip, not an error: the stream goes on.
    """
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise ValueError(f"An nbpipe event is a JSON object, not {type(data).__name__}")
    cls = EVENT_TYPES.get(str(data.get("type")))
    if cls is None:
        return _unknown(data)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def with_id(event: Event, event_id: int) -> Event:
    """Return the same event carrying the id the runner stored it under."""
    return dataclasses.replace(event, id=event_id)


def _unknown(data: dict[str, Any]) -> UnknownEvent:
    def number(value: Any, kind: type[int] | type[float]) -> Any:
        try:
            return kind(value)
        except (TypeError, ValueError, OverflowError):
            return kind(0)

    return UnknownEvent(run_id=str(data.get("run_id") or ""), ts=number(data.get("ts"), float),
                        id=number(data.get("id"), int), name=str(data.get("type") or ""), data=dict(data))
