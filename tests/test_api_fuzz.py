"""Schemathesis over every runner operation: bad input gets a 4xx, never a 5xx, and every
response matches the OpenAPI document (declared status codes, content types and bodies).

Runs against a real runner process holding one finished run, so generated ids sometimes hit
real objects. Positive and negative (schema-violating) examples; failures are collected, not
shrunk, so the test stays within a few minutes. ``GET /api/v1/events`` (the endless all-runs
stream) is checked separately by reading its head.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from nbpipe import component, pipeline


def _tiny_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", "{}")
    return buf.getvalue()

# uploads (model bundles) are zip bodies: random bytes, and a few real zips, exercise their readers
schemathesis.openapi.media_type("application/zip", st.one_of(st.binary(max_size=2048), st.just(_tiny_zip())))

# x2 modes x 28 operations; some have fewer distinct inputs: ≥ 500 in all. NBPIPE_FUZZ_EXAMPLES=300 for a
# deeper run by hand (~13k requests, the size of the probe that found the 500s).
EXAMPLES_PER_MODE = int(os.environ.get("NBPIPE_FUZZ_EXAMPLES", "30"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ENDLESS = {("GET", "/api/v1/events")}


@component(cache=False)
def hello(name: str) -> str:
    print("hello", name)
    return "hello " + name


@pipeline
def greet(name: str = "fuzz"):
    hello(name=name)


@pytest.fixture(scope="module")
def runner_with_a_run(nb_runner_factory_module):
    r = nb_runner_factory_module
    r.client().submit(greet).wait(timeout=60)
    return r


@pytest.fixture(scope="module")
def nb_runner_factory_module(tmp_path_factory):
    from runner_process import RunnerProcess

    r = RunnerProcess(tmp_path_factory.mktemp("fuzz") / "data").start()
    yield r
    r.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(runner_with_a_run) -> None:
    r = runner_with_a_run
    spec = httpx.get(f"{r.url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    auth = r.headers()
    failures: list[str] = []
    calls = 0
    operations = 0
    t0 = time.monotonic()
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in ENDLESS:
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case) -> None:  # type: ignore[no-untyped-def]
                nonlocal calls
                headers = {**(case.headers or {}), **auth}
                case.headers = headers
                resp = case.call(base_url=r.url, timeout=30)
                calls += 1
                try:
                    case.validate_response(resp, checks=CHECKS)
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected: one report for all
                    what = [line.strip() for line in str(exc).splitlines() if line.strip().startswith("- ")]
                    failures.append(f"{op.method.upper()} {op.path} -> {resp.status_code}: {'; '.join(what)} "
                                    f"{resp.text[:150]}")

            try:
                run()
            except Unsatisfiable:  # nothing to break in an operation without parameters (negative mode)
                assert mode is GenerationMode.NEGATIVE
    elapsed = time.monotonic() - t0
    print(f"\nschemathesis: {calls} requests over {operations} operations in {elapsed:.0f} s, "
          f"{len(failures)} failures")
    assert failures == [], "\n".join(sorted(set(failures))[:30])
    assert calls >= 500
    assert httpx.get(f"{r.url}/api/v1/health").json()["loop"]["ticking"]


def test_the_endless_event_stream_and_bad_event_ids(runner_with_a_run) -> None:
    r = runner_with_a_run
    with httpx.stream("GET", f"{r.url}/api/v1/events", params={"after": 0}, headers=r.headers(), timeout=30) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        first = next(resp.iter_lines())
        assert first.startswith("id: ")
    for bad in (str(2**63), str(2**64), "-1", "1e9", "abc"):
        resp = httpx.get(f"{r.url}/api/v1/runs/nope/events", headers={**r.headers(), "Last-Event-ID": bad})
        assert resp.status_code == 404
    run_id = r.client().runs()[0]["id"]
    with httpx.stream("GET", f"{r.url}/api/v1/runs/{run_id}/events", timeout=30,
                      headers={**r.headers(), "Last-Event-ID": str(2**63)}) as resp:
        assert resp.status_code == 200
    for params in ({"after": 2**63}, {"offset": 2**63}, {"attempt": 2**63}):
        path = "/api/v1/events" if "after" in params else f"/api/v1/runs/{run_id}/steps/hello/logs"
        assert httpx.get(f"{r.url}{path}", params=params, headers=r.headers()).status_code == 422


def test_a_model_bundle_with_a_deeply_nested_manifest_is_a_400(runner_with_a_run) -> None:
    """json.loads of a manifest nested 200,000 deep raised RecursionError in the runner: a 500."""
    import io
    import zipfile

    r = runner_with_a_run
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", "[" * 200_000 + "]" * 200_000)
        zf.writestr("predict.pkl", b"not loaded")
    resp = httpx.put(f"{r.url}/api/v1/endpoints/deep/versions", content=buf.getvalue(), timeout=60,
                     headers={**r.headers(), "Content-Type": "application/zip"})
    assert resp.status_code == 400, resp.text
    assert "nested too deeply" in resp.json()["error"]
    assert httpx.get(f"{r.url}/api/v1/endpoints/deep", headers=r.headers()).status_code == 404


def double(model, x):
    return x * model


def test_the_declared_response_models_hold_for_real_answers(runner_with_a_run) -> None:
    """The fuzz rarely reaches a real endpoint, schedule or lineage: their documented models are
    checked here against what the runner answers for real ones."""
    import jsonschema

    from nbpipe.serving import serve

    r = runner_with_a_run
    c = r.client()
    spec = httpx.get(f"{r.url}/openapi.json", timeout=30).json()

    def check(method: str, path: str, resp: httpx.Response) -> None:
        op = spec["paths"][path][method.lower()]
        declared = op["responses"][str(resp.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(resp.json(), {**declared, "components": spec["components"]})

    run = c.runs()[0]
    api, auth = f"{r.url}/api/v1", r.headers()
    serve(3, predict=double, name="models", runner=c)
    serve(4, predict=double, name="models", runner=c)
    sched = httpx.post(f"{api}/schedules", json={"package": run["package"], "interval": 3600}, headers=auth)
    answers = [
        ("POST", "/api/v1/schedules", sched),
        ("GET", "/api/v1/schedules", httpx.get(f"{api}/schedules", headers=auth)),
        ("POST", "/api/v1/schedules/{sid}/pause", httpx.post(f"{api}/schedules/{sched.json()['id']}/pause", headers=auth)),
        ("DELETE", "/api/v1/schedules/{sid}", httpx.delete(f"{api}/schedules/{sched.json()['id']}", headers=auth)),
        ("GET", "/api/v1/endpoints", httpx.get(f"{api}/endpoints", headers=auth)),
        ("POST", "/api/v1/endpoints/{name}/rollback", httpx.post(f"{api}/endpoints/models/rollback", headers=auth,
                                                                 json={}, timeout=120)),
        ("DELETE", "/api/v1/endpoints/{name}/versions/{version}",
         httpx.delete(f"{api}/endpoints/models/versions/2", headers=auth, timeout=120)),
        ("GET", "/api/v1/endpoints/{name}", httpx.get(f"{api}/endpoints/models", headers=auth)),
        ("DELETE", "/api/v1/endpoints/{name}", httpx.delete(f"{api}/endpoints/models", headers=auth, timeout=120)),
        ("GET", "/api/v1/whoami", httpx.get(f"{api}/whoami", headers=auth)),
        ("GET", "/api/v1/audit", httpx.get(f"{api}/audit", headers=auth)),
        ("GET", "/api/v1/dashboard/runs", httpx.get(f"{api}/dashboard/runs", params={"facets": True}, headers=auth)),
        ("GET", "/api/v1/lineage/runs/{run_id}/steps/{step}",
         httpx.get(f"{api}/lineage/runs/{run['id']}/steps/hello", headers=auth)),
        ("POST", "/api/v1/runs/{run_id}/rerun", httpx.post(f"{api}/runs/{run['id']}/rerun", json={}, headers=auth)),
    ]
    for method, path, resp in answers:
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        check(method, path, resp)
    c.run(answers[-1][2].json()["id"]).wait(timeout=60)
