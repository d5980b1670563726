"""Lineage of artifacts (Kubeflow Metadata's question): who made it, from what, and who used it.

For an output of a step of a run, :func:`lineage` answers, from the metadata database alone:

- **producer**: the run and step that *computed* it. A cached step did not: its result came from
  the cache entry of an earlier execution, which is followed (``steps.cache_key`` → ``cache``,
  else the earliest succeeded step with the same key and output digest), so lineage crosses runs.
- the producer's **inputs** (parameters, constants, upstream artifacts with their own run, step
  and digest, so a caller can walk further up) and its **code digest** (the component's digest in
  the run's package, the same one the cache key is made of).
- **occurrences**: every (run, step, output) holding the same content — the producer itself,
  cache reuses, and independent steps that happened to compute identical bytes.
- **consumers**: every step, in any run, whose input was bound to one of those occurrences
  (including loop ``Collected`` inputs), with its state and whether it was itself cached.

``GET /api/v1/lineage/runs/{run_id}/steps/{step}?output=`` serves it (:func:`lineage_router`).
Non-goals: lineage of artifacts made outside nbpipe; transitive closure (callers walk one hop
at a time, which keeps each answer small and fast on a large database).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import sqlalchemy as sa

from ..errors import NbpipeError
from . import db, profiles

_ITERATION = re.compile(r"^(?P<base>.+)-it\d+$")  # loop iteration steps (see .expand)


class LineageError(NbpipeError):
    """An unknown run, step or output (the route answers 404)."""


def _run_rows(conn: sa.Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    q = sa.select(db.runs.c.id, db.runs.c.name, db.runs.c.pipeline, db.runs.c.experiment, db.runs.c.state,
                  db.runs.c.created_at, db.runs.c.package).where(db.runs.c.id.in_(sorted(ids)))
    return {r["id"]: r for r in db.rows(conn.execute(q))}


def _step_row(conn: sa.Connection, run_id: str, step: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(db.steps).where(db.steps.c.run_id == run_id, db.steps.c.name == step)).first()
    return dict(row._mapping) if row else None


def _code_digest(conn: sa.Connection, package: str | None, component: str, cache: dict[str, Any]) -> str:
    if not package:
        return ""
    if package not in cache:
        row = conn.execute(sa.select(db.packages.c.spec).where(db.packages.c.digest == package)).first()
        cache[package] = db.loads(row[0]) if row else {}
    comp = (cache[package].get("components") or {}).get(component) or {}
    return str(comp.get("digest") or "")


def _digest_of(step_row: dict[str, Any] | None, output: str) -> str:
    outs = db.loads(step_row.get("outputs")) if step_row else None
    o = (outs or {}).get(output) or {}
    return str(o.get("digest") or "")


def _producer(conn: sa.Connection, run_id: str, step: dict[str, Any], output: str, digest: str) -> tuple[str, dict[str, Any]]:
    """(run id, step row) of the execution that computed ``digest``; itself unless it was cached."""
    if step["state"] != "cached":
        return run_id, step
    key = step.get("cache_key")
    if key:
        entry = conn.execute(sa.select(db.cache.c.run_id, db.cache.c.step).where(db.cache.c.key == key)).first()
        if entry is not None:
            row = _step_row(conn, entry[0], entry[1])
            if row is not None and _digest_of(row, output) == digest:
                return entry[0], row
        # The cache entry was replaced by a later execution: the earliest one with this content.
        q = (sa.select(db.steps).where(db.steps.c.cache_key == key, db.steps.c.state == "succeeded")
             .order_by(db.steps.c.finished_at))
        for row in db.rows(conn.execute(q)):
            if _digest_of(row, output) == digest:
                return row["run_id"], row
    # No cache record (e.g. pruned): the earliest executed step that wrote these bytes under this name.
    q = (sa.select(db.steps).join(db.artifacts, sa.and_(db.artifacts.c.run_id == db.steps.c.run_id,
                                                       db.artifacts.c.step == db.steps.c.name))
         .where(db.artifacts.c.digest == digest, db.artifacts.c.name == output, db.steps.c.state == "succeeded",
                db.steps.c.run_id.in_(profiles.visible_runs()))  # the caller's profiles only
         .order_by(db.steps.c.finished_at).limit(1))
    row = conn.execute(q).first()
    return (row._mapping["run_id"], dict(row._mapping)) if row else (run_id, step)


def _inputs(conn: sa.Connection, run_id: str, step: dict[str, Any]) -> list[dict[str, Any]]:
    """The producer's inputs, each resolved to a parameter, a constant or an upstream artifact."""
    out: list[dict[str, Any]] = []
    upstream: dict[str, dict[str, Any] | None] = {}
    for name, b in sorted((db.loads(step.get("inputs")) or {}).items()):
        b = b if isinstance(b, dict) else {"value": b}
        if "parameter" in b:
            out.append({"name": name, "kind": "parameter", "parameter": b["parameter"], "value": b.get("value")})
        elif "step" in b and "output" in b:
            src = str(b["step"])
            if src not in upstream:
                upstream[src] = _step_row(conn, run_id, src)
            row = upstream[src]
            o = ((db.loads(row.get("outputs")) if row else None) or {}).get(b["output"]) or {}
            out.append({"name": name, "kind": "artifact", "run": run_id, "step": src, "output": b["output"],
                        "digest": o.get("digest", ""), "format": o.get("format", ""), "size": o.get("size"),
                        "state": row["state"] if row else "unknown"})
        elif "collect" in b:
            c = b["collect"] if isinstance(b["collect"], dict) else {}
            out.append({"name": name, "kind": "collected", "run": run_id, "step": c.get("step", ""),
                        "output": c.get("output", "")})
        elif "placeholder" in b:
            out.append({"name": name, "kind": "placeholder", "value": b["placeholder"]})
        else:
            out.append({"name": name, "kind": "value", "value": b.get("value")})
    return out


def _binds(b: Any, step: str, output: str) -> bool:
    if not isinstance(b, dict):
        return False
    if b.get("step") == step and b.get("output") == output:
        return True
    c = b.get("collect")
    if isinstance(c, dict) and c.get("output") == output:
        m = _ITERATION.match(step)
        return c.get("step") == step or bool(m and m.group("base") == c.get("step"))
    return False


def _step_summary(row: dict[str, Any]) -> dict[str, Any]:
    start, end = row.get("started_at"), row.get("finished_at")
    return {"state": row["state"], "started_at": start, "finished_at": end,
            "duration": (end - start) if start and end else None, "reason": row.get("reason") or ""}


def lineage(engine: sa.Engine, run_id: str, step: str, output: str | None = None) -> dict[str, Any]:
    """Lineage of the outputs of ``step`` in ``run_id`` (all of them, or only ``output``).

    Returns ``{"run", "step", "artifacts": [...]}``; each artifact has ``producer`` (with
    ``inputs`` and ``code_digest``), ``occurrences``, ``consumers`` and ``runs`` (names of every
    run mentioned). Raises :class:`LineageError` for an unknown run, step or output.
    """
    with engine.connect() as conn:
        if conn.execute(sa.select(db.runs.c.id).where(db.runs.c.id == run_id)).first() is None:
            raise LineageError(f"No run {run_id}", hint="List runs with: nbpipe runs")
        row = _step_row(conn, run_id, step)
        if row is None:
            names = [r[0] for r in conn.execute(sa.select(db.steps.c.name).where(db.steps.c.run_id == run_id))]
            raise LineageError(f"Run {run_id} has no step {step!r}",
                               hint=f"Its steps: {', '.join(sorted(names)) or '(none yet)'}.")
        outputs = db.loads(row.get("outputs")) or {}
        if output is not None and output not in outputs:
            if not outputs:
                raise LineageError(f"Step {step!r} of run {run_id} has no outputs ({row['state']})",
                                   hint="Lineage exists for outputs of steps that succeeded or were cached.")
            raise LineageError(f"Step {step!r} of run {run_id} has no output {output!r}",
                               hint=f"Its outputs: {', '.join(sorted(outputs))}.")
        specs: dict[str, Any] = {}
        arts = [_artifact(conn, run_id, row, name, outputs[name], specs)
                for name in sorted(outputs) if output is None or name == output]
    return {"run": run_id, "step": step, "state": row["state"], "artifacts": arts}


def _artifact(conn: sa.Connection, run_id: str, row: dict[str, Any], name: str, out: dict[str, Any],
              specs: dict[str, Any]) -> dict[str, Any]:
    digest = str(out.get("digest") or "")
    prod_run, prod = _producer(conn, run_id, row, name, digest)
    occ_rows = db.rows(conn.execute(
        sa.select(db.artifacts.c.run_id, db.artifacts.c.step, db.artifacts.c.name, db.artifacts.c.created_at,
                  db.steps.c.state)
        .join(db.steps, sa.and_(db.steps.c.run_id == db.artifacts.c.run_id, db.steps.c.name == db.artifacts.c.step))
        .where(db.artifacts.c.digest == digest, db.artifacts.c.run_id.in_(profiles.visible_runs()))
        .order_by(db.artifacts.c.created_at))) if digest else []
    seen: set[tuple[str, str, str]] = set()
    occurrences = []
    for o in occ_rows:
        k = (o["run_id"], o["step"], o["name"])
        if k in seen:
            continue
        seen.add(k)
        how = ("produced" if (o["run_id"], o["step"]) == (prod_run, prod["name"]) and o["name"] == name
               else "cached" if o["state"] == "cached" else "same content")
        occurrences.append({"run": o["run_id"], "step": o["step"], "output": o["name"], "how": how,
                            "state": o["state"], "at": o["created_at"]})
    if (run_id, row["name"], name) not in seen:  # a snapshot row without its artifacts row (old data)
        occurrences.append({"run": run_id, "step": row["name"], "output": name,
                            "how": "produced" if row["state"] != "cached" else "cached", "state": row["state"],
                            "at": row.get("finished_at")})
    consumers = _consumers(conn, occurrences)
    runs_meta = _run_rows(conn, {prod_run, run_id} | {o["run"] for o in occurrences} | {c["run"] for c in consumers})
    prod_pkg = (runs_meta.get(prod_run) or {}).get("package")
    producer = {"run": prod_run, "step": prod["name"], "component": prod["component"],
                "code_digest": _code_digest(conn, prod_pkg, prod["component"], specs),
                "cache_key": prod.get("cache_key") or "", "inputs": _inputs(conn, prod_run, prod), **_step_summary(prod)}
    return {
        "run": run_id, "step": row["name"], "output": name, "digest": digest, "kind": out.get("kind", ""),
        "format": out.get("format", ""), "size": out.get("size"), "preview": out.get("preview"),
        "cached": row["state"] == "cached", "producer": producer, "occurrences": occurrences, "consumers": consumers,
        "runs": {rid: {k: r[k] for k in ("name", "pipeline", "experiment", "state", "created_at")}
                 for rid, r in runs_meta.items()},
    }


def _consumers(conn: sa.Connection, occurrences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_run: dict[str, list[dict[str, Any]]] = {}
    for o in occurrences:
        by_run.setdefault(o["run"], []).append(o)
    found = []
    for rid, occs in by_run.items():
        rows = db.rows(conn.execute(sa.select(db.steps).where(db.steps.c.run_id == rid)))
        for s in rows:
            bindings = db.loads(s.get("inputs")) or {}
            for inp, b in sorted(bindings.items()):
                src = next((o for o in occs if _binds(b, o["step"], o["output"])), None)
                if src is None:
                    continue
                outs = db.loads(s.get("outputs")) or {}
                found.append({"run": rid, "step": s["name"], "component": s["component"], "input": inp,
                              "from_step": src["step"], "from_output": src["output"],
                              "cached": s["state"] == "cached",
                              "outputs": {k: {"digest": v.get("digest", ""), "format": v.get("format", "")}
                                          for k, v in sorted(outs.items())},
                              **_step_summary(s)})
    found.sort(key=lambda c: (c.get("started_at") or c.get("finished_at") or 0, c["run"], c["step"]))
    return found


def lineage_router(engine: Callable[[], sa.Engine], error: Callable[[int, Any], Any]) -> Any:
    """``GET /api/v1/lineage/runs/{run_id}/steps/{step}?output=``, mounted by :mod:`.server`."""
    import asyncio

    from fastapi import APIRouter

    from .api_models import Lineage, errors

    router = APIRouter()

    @router.get("/api/v1/lineage/runs/{run_id}/steps/{step}",
                description="Lineage of a step's outputs: producer (through the cache), inputs, code digest, "
                            "and every step in any run that consumed the same artifact.",
                responses={200: {"model": Lineage}, **errors(404)})
    async def get_lineage(run_id: str, step: str, output: str | None = None) -> Any:
        try:
            return await asyncio.to_thread(lineage, engine(), run_id, step, output)
        except LineageError as exc:
            return error(404, exc)

    return router
