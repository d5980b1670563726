"""Many users, one runner: every API route isolates profiles (a table generated from the OpenAPI).

A real runner on loopback with a users file: alice (team-a), bob (team-b), root (admin) and a
JupyterHub-style proxy token. Alice creates one of everything (a run with a step log and an
artifact, a schedule, an endpoint); then for **every** operation in the runner's own
``/openapi.json`` bob gets 404/403 for alice's objects (or does not find them in a list or an event
stream), admin sees them, and alice herself gets them (so a 404 is isolation, not a bad id). A route
missing from the table fails the test until it is classified, so a new endpoint cannot escape.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

import nbpipe
from nbpipe import Dataset, Output, component, pipeline
from nbpipe.client import Client
from nbpipe.serving import deployer, endpoint
from nbpipe.runner.auth import hash_token
from tests.runner_process import RunnerProcess

TOKENS = {"alice": "alice-" + "a" * 40, "bob": "bob-" + "b" * 40, "root": "root-" + "r" * 40,
          "proxy": "proxy-" + "p" * 40, "dave": "dave-" + "d" * 40}

# Deliberately global operations, each with its reason. Everything else in the OpenAPI is checked.
GLOBAL = {
    ("get", "/api/v1/health"): "liveness probe: no token, no user data (versions and counts only)",
    ("head", "/api/v1/packages/{digest}"): "packages are content-addressed: asking for a digest needs its bytes' hash",
    ("put", "/api/v1/packages/{digest}"): "the same: an upload must hash to its digest; a package holds no run data",
    ("get", "/api/v1/whoami"): "answers about the caller only",
}
ADMIN_ONLY = {("get", "/api/v1/audit"): "who did what in every profile"}


def users_file(path: Path, *, with_bob: bool = True, with_dave: bool = False) -> None:
    users = [{"name": "alice", "role": "user", "profiles": ["team-a"], "token_sha256": hash_token(TOKENS["alice"])},
             {"name": "root", "role": "admin", "token_sha256": hash_token(TOKENS["root"])},
             {"name": "carol", "profiles": ["team-a"]}]  # hub-only user (no token), member of team-a
    if with_bob:
        users.append({"name": "bob", "profiles": ["team-b"], "token_sha256": hash_token(TOKENS["bob"])})
    if with_dave:
        users.append({"name": "dave", "profiles": ["team-b"], "token_sha256": hash_token(TOKENS["dave"])})
    tmp = path.with_suffix(".tmp")  # replaced whole, like a kubelet updates a mounted Secret
    tmp.write_text(json.dumps({"users": users, "proxy": {"token_sha256": hash_token(TOKENS["proxy"])},
                               "profiles": {"team-b": {"storePrefix": "teams/b"}}}))  # team-a: the default prefix
    os.replace(tmp, path)


@component(cache=True)
def make_data(n: int, data: Output[Dataset]) -> int:
    with open(data.path, "w") as fh:
        fh.write("x" * n)
    print(f"made {n} bytes in {os.getpid()} for {os.environ.get('NBPIPE_PROFILE')}")
    return os.getpid()


@pipeline
def shared(n: int = 7):
    make_data(n=n)


@component
def picture(n: int):
    from PIL import Image

    return Image.new("RGB", (4 + n, 4), (200, 10, 10))  # a value whose preview is a separate PNG object


@pipeline
def pictured(n: int = 1):
    picture(n=n)


def stored(team: "Team", profile: str) -> Path:
    """Where ``profile``'s objects are in the runner's local store (its view, see ProfileStores)."""
    return team.runner.data_dir / "store" / ("teams/b" if profile == "team-b" else f"profiles/{profile}")


class Team:
    def __init__(self, runner: RunnerProcess, users: Path):
        self.runner, self.users = runner, users
        self.clients = {who: Client(runner.url, token=TOKENS[who]) for who in ("alice", "bob", "root")}
        self.http = {who: httpx.Client(base_url=runner.url, headers={"Authorization": f"Bearer {TOKENS[who]}"},
                                       timeout=60) for who in ("alice", "bob", "root")}


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    home = tmp_path_factory.mktemp("profiles")
    users = home / "users.json"
    users_file(users)
    runner = RunnerProcess(home / "runner", extra_env={"NBPIPE_USERS_FILE": str(users)}).start()
    try:
        yield Team(runner, users)
    finally:
        runner.stop()


@pytest.fixture(scope="module")
def alices(team: Team) -> dict[str, str]:
    """One of each of alice's objects, by path parameter name."""
    alice = team.clients["alice"]
    run = alice.submit(shared, {"n": 11}).wait(timeout=120)
    assert run.state == "succeeded"
    digest = run.steps["make_data"]["outputs"]["data"]["digest"]
    package = team.http["alice"].get(f"/api/v1/runs/{run.id}").json()["package"]
    sched = team.http["alice"].post("/api/v1/schedules", json={"package": package, "interval": 3600,
                                                               "start_at": 1e10})
    assert sched.status_code == 201, sched.text
    ep = nbpipe.serve(3, predict=lambda m, x: x, name="alice-ep", runner=alice)
    pic = alice.submit(pictured, {"n": 2}).wait(timeout=120)
    assert pic.state == "succeeded", pic.steps
    preview = pic.steps["picture"]["outputs"]["output"]["preview"]
    assert preview["type"] == "image"
    return {"run_id": run.id, "step": "make_data", "sid": sched.json()["id"], "name": ep.name, "version": "1",
            "digest": digest, "package": package, "preview": preview["digest"]}


def operations(team: Team) -> list[tuple[str, str, dict[str, Any]]]:
    spec = team.http["root"].get("/openapi.json").json()
    return [(m, p, op) for p, ops in sorted(spec["paths"].items()) for m, op in sorted(ops.items())]


def fill(path: str, ids: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        assert name in ids, f"{path}: no test value for path parameter {{{name}}}: add one to alices()"
        return ids[name]

    return re.sub(r"\{(\w+)\}", one, path)


CASES = [0]  # requests the route table made (for the report line)


def call(c: httpx.Client, method: str, url: str, **kw: Any) -> httpx.Response:
    CASES[0] += 1
    if method == "get" and url.endswith("/events"):  # an SSE stream: the status and first bytes only
        with c.stream("GET", url, params={"after": 0}, **kw) as r:
            if r.status_code == 200:
                next(r.iter_bytes(), b"")
            else:
                r.read()
            return r
    return c.request(method.upper(), url, **kw)


def test_every_route_isolates_profiles(team: Team, alices: dict[str, str]) -> None:
    ops = operations(team)
    assert len(ops) >= 20
    checked = []
    secrets_of_alice = [alices["run_id"], alices["sid"], alices["name"]]
    for method, path, _op in ops:
        key = (method, path)
        if key in GLOBAL:
            continue
        bob, root, alice = team.http["bob"], team.http["root"], team.http["alice"]
        if key in ADMIN_ONLY:
            assert call(bob, method, path).status_code == 403, path
            assert call(root, method, path).status_code == 200, path
            checked.append((key, "admin-only"))
            continue
        # every route: bob cannot act in alice's profile by naming it
        r = call(bob, method, fill(path, alices), headers={"X-Nbpipe-Profile": "team-a"})
        assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
        if "{" in path:
            # an artifact route also with the digest of an image inside a preview (not an output of its own)
            for digest in [alices["digest"]] + ([alices["preview"]] if "{digest}" in path else []):
                url = fill(path, {**alices, "digest": digest})
                r = call(bob, method, url, json={})
                assert r.status_code in (403, 404), (method, path, r.status_code, r.text[:200])
                assert all(s not in r.text for s in secrets_of_alice[1:] if s not in url), (method, path)
                if method == "get":  # the owner and the admin get it: the 404 above is isolation, not a bad id
                    for who in (alice, root):
                        got = call(who, method, url)
                        assert got.status_code == 200, (method, path, got.status_code, got.text[:200])
            checked.append((key, "object"))
        elif method == "get" and not path.endswith("/events"):
            text = call(bob, method, path).text
            assert not any(s in text for s in secrets_of_alice), (path, text[:300])
            seen = call(root, method, path).text + call(alice, method, path).text
            if path in ("/api/v1/runs", "/api/v1/dashboard/runs", "/api/v1/schedules", "/api/v1/endpoints",
                        "/api/v1/experiments"):
                mine = {"/api/v1/schedules": alices["sid"], "/api/v1/endpoints": alices["name"],
                        "/api/v1/experiments": '"runs":'}.get(path, alices["run_id"])
                assert call(root, method, path).text.count(mine) and call(alice, method, path).text.count(mine), path
            checked.append((key, "list"))
        elif method == "get":
            checked.append((key, "stream"))  # the all-runs stream: test_event_stream_shows_own_profiles_only
        else:
            checked.append((key, "create"))  # naming a foreign profile was refused above
    # alice's objects survived bob's POST/PUT/DELETE calls on them
    snap = team.http["alice"].get(f"/api/v1/runs/{alices['run_id']}").json()
    assert snap["state"] == "succeeded"
    assert team.http["alice"].get(f"/api/v1/schedules/{alices['sid']}").json()["paused"] is False
    assert team.http["alice"].get(f"/api/v1/endpoints/{alices['name']}").json()["default_version"] == "1"
    def experiment_runs(who: str) -> int:
        return sum(e["runs"] for e in team.http[who].get("/api/v1/experiments").json())

    assert experiment_runs("bob") == len(team.http["bob"].get("/api/v1/runs").json())
    assert experiment_runs("root") > experiment_runs("bob") and experiment_runs("alice") >= 1
    kinds = {k: sum(1 for _, c in checked if c == k) for k in ("object", "list", "create", "stream", "admin-only")}
    print(f"route table: {len(ops)} operations, {len(checked)} checked ({CASES[0]} requests), "
          f"{len(GLOBAL)} global: {kinds}")
    assert kinds["object"] >= 15 and kinds["list"] >= 5


def _read_stream_until(c: httpx.Client, until_run: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    with c.stream("GET", "/api/v1/events", params={"after": 0}, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                e = json.loads(line[6:])
                seen.append(e)
                if e["run_id"] == until_run and e["type"] == "RunFinished":
                    return seen
    raise AssertionError("the stream ended early")


def test_event_stream_shows_own_profiles_only(team: Team, alices: dict[str, str]) -> None:
    bobs = team.clients["bob"].submit(shared, {"n": 3}).wait(timeout=120)
    seen = _read_stream_until(team.http["bob"], bobs.id)  # bob's run came after alice's
    assert {e["run_id"] for e in seen} == {bobs.id}
    seen = _read_stream_until(team.http["root"], bobs.id)
    assert {alices["run_id"], bobs.id} <= {e["run_id"] for e in seen}
    # bob's run is in team-b, alice's list does not show it, the admin's does
    assert bobs.id not in team.http["alice"].get("/api/v1/runs").text
    assert bobs.id in team.http["root"].get("/api/v1/runs").text
    assert team.http["bob"].get(f"/api/v1/runs/{bobs.id}").json()["id"] == bobs.id


def test_cache_hits_never_cross_profiles(team: Team) -> None:
    a1 = team.clients["alice"].submit(shared, {"n": 5}).wait(timeout=120)
    a2 = team.clients["alice"].submit(shared, {"n": 5}).wait(timeout=120)
    b1 = team.clients["bob"].submit(shared, {"n": 5}).wait(timeout=120)
    pid = {r.id: r.output("make_data", "output") for r in (a1, a2, b1)}
    assert a2.steps["make_data"]["state"] == "cached" and pid[a2.id] == pid[a1.id]  # the cache works in a profile
    assert b1.steps["make_data"]["state"] == "succeeded" and pid[b1.id] != pid[a1.id]  # computed again in team-b
    assert f"in {pid[b1.id]} for team-b" in b1.logs("make_data")  # a step knows its profile
    assert f"in {pid[a1.id]} for team-a" in a1.logs("make_data")


def test_each_profiles_run_objects_live_under_its_own_prefix(team: Team, alices: dict[str, str]) -> None:
    """The same pipeline in two profiles: payloads, outputs, previews and results land in each profile's
    view of the store only, each owner downloads its own, and the other team gets 404 for what only one has."""
    from nbpipe.stores import content_key

    root = team.runner.data_dir / "store"
    runs = {who: team.clients[who].submit(pictured, {"n": 6}).wait(timeout=120) for who in ("alice", "bob")}
    outs = {who: r.steps["picture"]["outputs"]["output"] for who, r in runs.items()}
    assert outs["alice"]["digest"] == outs["bob"]["digest"]  # the same bytes: stored once per profile
    for who, prof in (("alice", "team-a"), ("bob", "team-b")):
        run, out, base = runs[who], outs[who], stored(team, prof)
        assert run.state == "succeeded" and run.steps["picture"]["state"] == "succeeded"  # no cross-profile hit
        assert list(base.glob(f"runs/{run.id}/picture/*/result.json")), sorted(base.rglob("*"))[:20]
        assert not (root / "runs" / run.id).exists()  # nothing of the run at the store's root
        for digest in (out["digest"], out["preview"]["digest"]):
            assert (base / content_key(digest)).is_file(), (prof, digest)
        got = team.http[who].get(f"/api/v1/artifacts/{out['preview']['digest']}", params={"mime": "image/png"})
        assert got.status_code == 200 and got.content.startswith(b"\x89PNG"), (who, got.status_code)
        got = team.http[who].get(f"/api/v1/artifacts/{out['digest']}")
        assert got.status_code == 200 and got.content == (base / content_key(out["digest"])).read_bytes()
        # the step's payload, uploaded to the root with its package, was staged into the view (a step reads
        # only its own prefix); the root holds only uploads (packages, payloads): no run's objects
        uploads = {p.name for p in (root / "sha256").rglob("*") if p.is_file()}
        assert uploads & {p.name for p in (base / "sha256").rglob("*")}, prof
        assert out["digest"] not in uploads and out["preview"]["digest"] not in uploads
    # what only team-b has is not found for alice (an output and a preview image), but is for bob and the admin
    only_b = team.clients["bob"].submit(pictured, {"n": 9}).wait(timeout=120).steps["picture"]["outputs"]["output"]
    for digest in (only_b["digest"], only_b["preview"]["digest"]):
        assert (stored(team, "team-b") / content_key(digest)).is_file()
        assert not (stored(team, "team-a") / content_key(digest)).exists()
        assert team.http["alice"].get(f"/api/v1/artifacts/{digest}").status_code == 404
        assert team.http["bob"].get(f"/api/v1/artifacts/{digest}").status_code == 200
        assert team.http["root"].get(f"/api/v1/artifacts/{digest}").status_code == 200
    # a run's package (nbpipe.debug loads the function from it) is its profile's members' to read, nobody else's
    erin = Client(team.runner.url, token=TOKENS["proxy"], user="erin")._http  # profile user-erin: never ran it
    package = team.http["alice"].get(f"/api/v1/runs/{runs['alice'].id}").json()["package"]
    assert team.http["alice"].get(f"/api/v1/artifacts/{package}").status_code == 200
    assert erin.get(f"/api/v1/artifacts/{package}").status_code == 404
    # alice's endpoint bundle (deployed from her kernel) is in team-a's view
    bundle = team.http["alice"].get(f"/api/v1/endpoints/{alices['name']}").json()["versions"][0]["digest"]
    assert (stored(team, "team-a") / content_key(bundle)).is_file()


def test_submit_profile_option_and_membership(team: Team) -> None:
    root = Client(team.runner.url, token=TOKENS["root"], profile="team-b")
    run = root.submit(shared, {"n": 2}).wait(timeout=120)
    assert run.id in team.http["bob"].get("/api/v1/runs").text  # the admin submitted into team-b
    with pytest.raises(Exception, match="not a member of profile 'team-b'"):
        Client(team.runner.url, token=TOKENS["alice"], profile="team-b").submit(shared, {"n": 2})
    who = team.http["alice"].get("/api/v1/whoami").json()
    assert who == {"name": "alice", "role": "user", "profiles": ["team-a"], "default_profile": "team-a"}


def test_tokens_added_and_revoked_without_restart(team: Team) -> None:
    pid = team.runner.pid
    dave = httpx.Client(base_url=team.runner.url, headers={"Authorization": f"Bearer {TOKENS['dave']}"})
    assert dave.get("/api/v1/runs").status_code == 401
    users_file(team.users, with_bob=False, with_dave=True)
    assert dave.get("/api/v1/whoami").json()["profiles"] == ["team-b"]
    assert team.http["bob"].get("/api/v1/runs").status_code == 401  # revoked
    users_file(team.users)  # bob back, dave gone
    assert dave.get("/api/v1/runs").status_code == 401
    assert team.http["bob"].get("/api/v1/whoami").json()["name"] == "bob"
    assert team.runner.pid == pid
    # a broken file does not lock everyone out: the previous users stay, the error is logged
    team.users.write_text("{not json")
    assert team.http["bob"].get("/api/v1/whoami").status_code == 200
    users_file(team.users)


def test_proxy_forwards_hub_users_only_with_its_token(team: Team, alices: dict[str, str]) -> None:
    carol = Client(team.runner.url, token=TOKENS["proxy"], user="carol")  # listed: team-a
    assert alices["run_id"] in carol._http.get("/api/v1/runs").text
    erin = Client(team.runner.url, token=TOKENS["proxy"], user="erin")  # not listed: her own profile
    assert erin._http.get("/api/v1/whoami").json()["profiles"] == ["user-erin"]
    # a hub login named like a team's profile does not get into that team's profile
    squatter = Client(team.runner.url, token=TOKENS["proxy"], user="team-a")
    assert squatter._http.get("/api/v1/whoami").json()["profiles"] == ["user-team-a"]
    assert alices["run_id"] not in squatter._http.get("/api/v1/runs").text
    assert alices["run_id"] not in erin._http.get("/api/v1/runs").text
    run = erin.submit(shared, {"n": 1}).wait(timeout=120)
    assert run.id not in team.http["alice"].get("/api/v1/runs").text
    # the header means nothing with another token: bob stays bob, root stays root
    forged = Client(team.runner.url, token=TOKENS["bob"], user="carol")
    assert forged._http.get("/api/v1/whoami").json()["name"] == "bob"
    assert alices["run_id"] not in forged._http.get("/api/v1/runs").text
    # the proxy token alone (no user) is nobody
    assert httpx.get(f"{team.runner.url}/api/v1/runs", headers={"Authorization": f"Bearer {TOKENS['proxy']}"}
                     ).status_code == 401


def test_migration_5_puts_existing_objects_in_the_default_profile(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from nbpipe.runner import db, migrations

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.connect(url)
    with engine.begin() as conn:  # a database from before profiles: no profile columns, at version 4
        conn.execute(sa.text("DROP INDEX ix_runs_profile"))
        for table in ("runs", "schedules", "endpoints"):
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN profile"))
        conn.execute(sa.text("DELETE FROM nbpipe_migrations WHERE version = 5"))
        conn.execute(sa.text("INSERT INTO packages (digest, name, size, spec, created_at) "
                             "VALUES ('dd', 'p', 1, '{}', 0)"))
        conn.execute(sa.text("INSERT INTO runs (id, name, pipeline, experiment, package, params, state, reason, "
                             "labels, created_at) VALUES ('r1', 'r', 'p', 'e', 'dd', '{}', 'succeeded', '', '{}', 0)"))
    engine.dispose()
    engine = db.connect(url)
    assert migrations.applied(engine) == list(range(1, migrations.LATEST + 1))
    with engine.connect() as conn:
        assert conn.execute(sa.select(db.runs.c.profile)).scalar() == "default"
    for table in ("runs", "schedules", "endpoints"):
        assert "profile" in {c["name"] for c in sa.inspect(engine).get_columns(table)}
    assert "ix_runs_profile" in {ix["name"] for ix in sa.inspect(engine).get_indexes("runs")}
    engine.dispose()


@component
def tiny_model(k: int) -> dict:
    return {"k": k}


def _echo(model, x):
    return x


_to_alices = deployer("alice-ep", predict=_echo)
_to_own = deployer("alice-pipe-ep", predict=_echo)


@pipeline
def deploys_to_alices(k: int = 1):
    _to_alices(model=tiny_model(k=k).output)


@pipeline
def deploys_own(k: int = 1):
    _to_own(model=tiny_model(k=k).output)


def test_a_pipeline_cannot_deploy_into_another_profiles_endpoint(team: Team, alices: dict[str, str]) -> None:
    hijack = team.clients["bob"].submit(deploys_to_alices, {"k": 2}).wait(timeout=120)
    assert hijack.state == "succeeded"
    # alice's own deploy pipeline afterwards: the runner follows deploys in event order, so once hers
    # is served, bob's was handled
    own = team.clients["alice"].submit(deploys_own, {"k": 3}).wait(timeout=120)
    ep = endpoint("alice-pipe-ep", runner=team.clients["alice"], wait=120)
    assert ep.info["profile"] == "team-a" and own.state == "succeeded"
    assert "alice-pipe-ep" not in team.http["bob"].get("/api/v1/endpoints").text
    versions = team.http["alice"].get(f"/api/v1/endpoints/{alices['name']}").json()["versions"]
    assert [v["version"] for v in versions] == ["1"], versions  # bob's run did not add a version


def test_a_member_queries_its_profiles_endpoint_and_nobody_else_gets_its_token(team: Team, alices: dict[str, str]
                                                                               ) -> None:
    import numpy as np

    ep = endpoint(alices["name"], runner=team.clients["alice"])
    np.testing.assert_array_equal(ep.predict(np.array([1.0, 2.0])), [1.0, 2.0])
    token = team.http["root"].get(f"/api/v1/endpoints/{alices['name']}").json()["token"]
    assert token and token not in team.http["bob"].get("/api/v1/endpoints").text


def test_a_profiles_store_prefix_comes_from_the_profiles_file_and_follows_its_edits(tmp_path: Path) -> None:
    from nbpipe.runner.profiles import Placements, ProfileStores
    from nbpipe.stores.local import LocalStore

    path = tmp_path / "users.yaml"
    path.write_text("profiles:\n  team-b: {storePrefix: teams/b}\n  team-c: {namespace: ns-c}\n")
    root = LocalStore(tmp_path / "store")
    stores = ProfileStores(root, Placements(path))
    assert stores.of("default") is root and stores.of(None) is root  # the layout from before profiles
    assert {p: stores.prefix(p) for p in ("team-a", "team-b", "team-c", "user-erin")} == {
        "team-a": "profiles/team-a", "team-b": "teams/b", "team-c": "profiles/team-c", "user-erin": "profiles/user-erin"}
    assert stores.of("team-b").config() == {"type": "local", "root": str(tmp_path / "store" / "teams" / "b")}
    assert stores.root_key("team-b", "sha256/ab/x") == "teams/b/sha256/ab/x"
    assert Placements(path).get("team-b").namespace == "" and Placements(path).namespaces() == {"ns-c"}
    payload = root.put_bytes(b"payload")
    stores.stage("team-b", payload.key)
    assert (tmp_path / "store" / "teams" / "b" / payload.key).read_bytes() == b"payload"
    path.write_text("profiles:\n  team-b: {storePrefix: teams/bee}\n")  # edited: new steps use the new prefix
    assert stores.prefix("team-b") == "teams/bee" and not stores.of("team-b").exists(payload.key)
    path.write_text("profiles:\n  team-b: {storePrefix: ../escape}\n")  # a broken edit keeps the last good one
    assert stores.prefix("team-b") == "teams/bee"


@pytest.fixture(scope="module")
def s3_team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Team, Any, str]]:
    """The same users on a runner whose store is S3 (a moto server): (team, minio client, runner prefix)."""
    import uuid

    from minio import Minio

    from tests.test_store_s3 import ACCESS, SECRET, start_moto, stop

    proc, url = start_moto()
    s3 = Minio(url.removeprefix("http://"), access_key=ACCESS, secret_key=SECRET, secure=False)
    home = tmp_path_factory.mktemp("profiles-s3")
    users_file(home / "users.json")
    prefix = "r" + uuid.uuid4().hex[:8]
    runner = RunnerProcess(home / "runner", extra_env={
        "NBPIPE_USERS_FILE": str(home / "users.json"), "NBPIPE_STORE": "s3", "NBPIPE_S3_ENDPOINT": url,
        "NBPIPE_S3_BUCKET": "nbpipe-prof", "NBPIPE_S3_PREFIX": prefix, "NBPIPE_S3_ACCESS_KEY": ACCESS,
        "NBPIPE_S3_SECRET_KEY": SECRET})
    try:
        yield Team(runner.start(), home / "users.json"), s3, prefix
    finally:
        runner.stop()
        stop(proc)


def test_on_s3_each_profiles_objects_are_under_its_prefix_and_presigned_urls_point_there(
        s3_team: tuple[Team, Any, str]) -> None:
    team, s3, prefix = s3_team
    views = {"alice": f"{prefix}/profiles/team-a", "bob": f"{prefix}/teams/b"}  # team-b: storePrefix (users_file)
    runs = {who: team.clients[who].submit(pictured, {"n": 4}).wait(timeout=120) for who in views}
    keys = [str(o.object_name) for o in s3.list_objects("nbpipe-prof", prefix=prefix + "/", recursive=True)]
    for who, view in views.items():
        run, out = runs[who], runs[who].steps["picture"]["outputs"]["output"]
        assert run.steps["picture"]["state"] == "succeeded", who  # computed in each profile (no shared cache)
        written = [k for k in keys if f"runs/{run.id}/" in k]
        assert written and all(k.startswith(f"{view}/runs/{run.id}/picture/") for k in written), written
        for digest in (out["digest"], out["preview"]["digest"]):
            assert f"{view}/sha256/{digest[:2]}/{digest}" in keys, (who, digest)
            got = team.http[who].get(f"/api/v1/artifacts/{digest}", params={"mime": "image/png"})
            assert got.status_code == 307 and f"/{view}/sha256/" in got.headers["location"], got.headers
            assert httpx.get(got.headers["location"]).status_code == 200  # the presigned URL serves it
    only_b = team.clients["bob"].submit(pictured, {"n": 8}).wait(timeout=120).steps["picture"]["outputs"]["output"]
    for digest in (only_b["digest"], only_b["preview"]["digest"]):
        assert team.http["alice"].get(f"/api/v1/artifacts/{digest}").status_code == 404
        assert team.http["bob"].get(f"/api/v1/artifacts/{digest}").status_code == 307
    # nothing of these runs outside the two views; the root holds the uploads (packages, payloads) only
    assert all(k.startswith((views["alice"] + "/", views["bob"] + "/", f"{prefix}/sha256/")) for k in keys), keys


@component(cache=False)
def count_files(files: list) -> int:
    return len(files)


@pipeline
def ingest(files: list = [], tag: str = "x"):  # noqa: B006 - a pipeline parameter's default, never mutated
    count_files(files=files)


def test_a_store_trigger_watches_its_prefix_in_its_profiles_view_only(team: Team) -> None:
    import time

    from nbpipe.stores.local import LocalStore

    s = team.clients["alice"].create_schedule(ingest, trigger={"prefix": "incoming/", "param": "files", "poll": 0.3})
    runs_url = "/api/v1/runs"

    def fired() -> list[dict[str, Any]]:
        return [r for r in team.http["alice"].get(runs_url).json() if (r.get("labels") or {}).get("schedule") == s["id"]]

    # the same prefix at the root (default) and in team-b's view: not alice's inbox
    LocalStore(team.runner.data_dir / "store").put_bytes(b"default's", "incoming/root.csv")
    LocalStore(stored(team, "team-b")).put_bytes(b"team-b's", "incoming/b.csv")
    LocalStore(stored(team, "team-a")).put_bytes(b"team-a's", "incoming/a.csv")
    deadline = time.monotonic() + 120
    while not fired() and time.monotonic() < deadline:
        time.sleep(0.2)
    (run,) = fired()
    assert run["params"]["files"] == ["incoming/a.csv"], run["params"]
    assert team.clients["alice"].run(run["id"]).wait(timeout=120).output("count_files") == 1
    team.http["alice"].delete(f"/api/v1/schedules/{s['id']}")
