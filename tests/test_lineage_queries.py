"""The dashboard's queries (filtered run list, lineage) on SQLite and on a real PostgreSQL server.

Rows are written the way the scheduler writes them (runs, steps with input bindings and outputs,
artifacts, the cache table), so the SQL — the JSON label filter, case-insensitive search with
literal wildcards, facets, following a cached step to the run that computed it — is checked on
both databases. The PostgreSQL server is the one tests/test_postgres.py starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_postgres import new_database, pg_server  # noqa: F401 - the module's PostgreSQL fixture

from nbpipe.runner import db
from nbpipe.runner.lineage import LineageError, lineage
from nbpipe.runner.run_query import query_runs


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> sa.Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'q.db'}"
    else:
        url = new_database(request.getfixturevalue("pg_server"), f"q_{os.urandom(4).hex()}")
    eng = db.connect(url)
    yield eng
    eng.dispose()


def out(digest: str) -> dict:
    return {"digest": digest, "key": f"artifacts/{digest}", "kind": "artifact", "format": "file", "size": 3}


def fill(engine: sa.Engine) -> None:
    spec = {"steps": [], "components": {"prep": {"digest": "p" * 64}, "train": {"digest": "t" * 64},
                                        "evaluate": {"digest": "e" * 64}}}
    with engine.begin() as c:
        c.execute(db.packages.insert().values(digest="a" * 64, name="demo", size=1, spec=json.dumps(spec), created_at=1))
        for i, (rid, exp, nb, state) in enumerate([("r1", "alpha", "work/One.ipynb", "succeeded"),
                                                   ("r2", "alpha", "work/two.ipynb", "succeeded"),
                                                   ("r3", "beta", "work/One.ipynb", "failed"),
                                                   ("r4", "beta", "100%_done.ipynb", "running")]):
            c.execute(db.runs.insert().values(id=rid, name=f"demo run {i}", pipeline="demo", experiment=exp,
                                              package="a" * 64, params=json.dumps({"i": i}), state=state, reason="",
                                              labels=json.dumps({"notebook": nb}), created_at=10 + i, started_at=10 + i,
                                              finished_at=20 + i))
        steps = [
            # run 1 computes everything; run 2 reuses prep and train from the cache
            ("r1", "prep", "prep", "succeeded", "k-prep", {"n": {"parameter": "n", "value": 3}}, {"output": out("d1")}),
            ("r1", "train", "train", "succeeded", "k-train", {"data": {"step": "prep", "output": "output"},
                                                              "lr": {"value": 0.1}}, {"model": out("m1")}),
            ("r1", "evaluate", "evaluate", "succeeded", "k-ev1", {"model": {"step": "train", "output": "model"}}, {}),
            ("r2", "prep", "prep", "cached", "k-prep", {"n": {"parameter": "n", "value": 3}}, {"output": out("d1")}),
            ("r2", "train", "train", "cached", "k-train", {"data": {"step": "prep", "output": "output"},
                                                           "lr": {"value": 0.1}}, {"model": out("m1")}),
            ("r2", "evaluate", "evaluate", "failed", "k-ev2", {"model": {"step": "train", "output": "model"}}, {}),
        ]
        for rid, name, comp, state, key, inputs, outputs in steps:
            c.execute(db.steps.insert().values(run_id=rid, name=name, component=comp, state=state, attempt=1,
                                               max_attempts=1, started_at=1, finished_at=2, reason="", traceback="",
                                               cache_key=key, outputs=json.dumps(outputs), inputs=json.dumps(inputs)))
            for oname, o in outputs.items():
                c.execute(db.artifacts.insert().values(run_id=rid, step=name, name=oname, digest=o["digest"],
                                                       key=o["key"], kind="artifact", format="file", size=3,
                                                       created_at=5 if rid == "r1" else 15))
        for key, rid, step, outs in (("k-prep", "r1", "prep", {"output": out("d1")}),
                                     ("k-train", "r1", "train", {"model": out("m1")})):
            c.execute(db.cache.insert().values(key=key, outputs=json.dumps(outs), run_id=rid, step=step, created_at=5))


def ids(page: dict) -> list[str]:
    return [r["id"] for r in page["runs"]]


def test_run_list_filters_search_and_facets(engine: sa.Engine) -> None:
    fill(engine)
    page = query_runs(engine, facets=True)
    assert ids(page) == ["r4", "r3", "r2", "r1"] and page["total"] == 4
    assert page["runs"][2]["step_counts"] == {"cached": 2, "failed": 1}
    f = page["facets"]
    assert {v["value"]: v["runs"] for v in f["notebooks"]} == {"work/One.ipynb": 2, "work/two.ipynb": 1,
                                                              "100%_done.ipynb": 1}
    assert f["states"]["succeeded"] == 2 and f["states"]["running"] == 1 and f["states"]["queued"] == 0
    assert ids(query_runs(engine, notebook="work/One.ipynb")) == ["r3", "r1"]
    assert ids(query_runs(engine, experiment="beta", state="failed,running")) == ["r4", "r3"]
    assert ids(query_runs(engine, q="WORK/one")) == ["r3", "r1"]  # case-insensitive, reaches labels
    assert ids(query_runs(engine, q="100%_")) == ["r4"]  # wildcards are literal
    assert ids(query_runs(engine, q="%")) == ["r4"]
    page = query_runs(engine, limit=2, offset=2)
    assert ids(page) == ["r2", "r1"] and page["total"] == 4



def test_runs_are_found_by_parameter_value_and_archived_ones_only_when_asked(engine: sa.Engine) -> None:
    fill(engine)
    params = {"r1": {"lr": 0.1, "model": "rf", "fast": True, "epochs": 10},
              "r2": {"lr": 0.01, "model": "svm", "fast": False, "epochs": 10.0},
              "r3": {"lr": 0.1, "model": "rf=deep", "fast": None, "epochs": 3}}
    with engine.begin() as c:
        for rid, p in params.items():
            c.execute(db.runs.update().where(db.runs.c.id == rid).values(params=json.dumps(p)))
    assert ids(query_runs(engine, q="lr=0.1")) == ["r3", "r1"]
    assert ids(query_runs(engine, q="lr = .1")) == ["r3", "r1"]  # as Python reads the number
    assert ids(query_runs(engine, q="lr=0.01")) == ["r2"]
    assert ids(query_runs(engine, q="model=rf")) == ["r1"] and ids(query_runs(engine, q='model="rf"')) == ["r1"]
    assert ids(query_runs(engine, q="model=rf=deep")) == ["r3"]  # the value is everything after the first =
    assert ids(query_runs(engine, q="fast=true")) == ["r1"] and ids(query_runs(engine, q="fast=false")) == ["r2"]
    assert ids(query_runs(engine, q="fast=null")) == ["r3"]
    assert ids(query_runs(engine, q="epochs=10")) == ["r2", "r1"]  # 10 and 10.0 are the same number
    assert ids(query_runs(engine, q="nope=1")) == []
    assert ids(query_runs(engine, q="model")) == []  # a plain search does not match parameter names (all runs have them)
    with engine.begin() as c:  # archived runs (nbpipe.runner.run_storage) only when asked for
        c.execute(db.runs.update().where(db.runs.c.id == "r1").values(archived_at=99.0))
    assert ids(query_runs(engine, q="lr=0.1")) == ["r3"]
    page = query_runs(engine, archived=True, facets=True)
    assert ids(page) == ["r1"] and page["total"] == 1 and page["facets"]["states"]["succeeded"] == 1

def test_lineage_follows_the_cache_to_the_computing_run(engine: sa.Engine) -> None:
    fill(engine)
    body = lineage(engine, "r2", "train")
    [art] = body["artifacts"]
    p = art["producer"]
    assert (p["run"], p["step"], p["code_digest"]) == ("r1", "train", "t" * 64)
    assert {i["name"]: i["kind"] for i in p["inputs"]} == {"data": "artifact", "lr": "value"}
    assert [o["how"] for o in art["occurrences"]] == ["produced", "cached"]
    assert {(c["run"], c["step"], c["state"]) for c in art["consumers"]} == {("r1", "evaluate", "succeeded"),
                                                                            ("r2", "evaluate", "failed")}
    # the cache entry replaced by another execution: found again by key and content
    with engine.begin() as c:
        c.execute(db.cache.delete())
    assert lineage(engine, "r2", "prep", "output")["artifacts"][0]["producer"]["run"] == "r1"
    with pytest.raises(LineageError, match="has no outputs"):
        lineage(engine, "r1", "evaluate", "x")
    with pytest.raises(LineageError, match="No run nope"):
        lineage(engine, "nope", "train")
