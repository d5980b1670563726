"""Loopback is not a security boundary: the runner acts like Jupyter Server.

Every request needs the token (generated at start, kept in a 0600 runtime file, never on a
command line, never in a step's environment); Host and Origin are checked (DNS rebinding, a
cross-site simple POST); an empty host is not loopback; steps get an allow-listed environment;
files are owner-only under umask 022; a ``setsid`` grandchild dies on cancel.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx
import psutil
import pytest
from runner_process import RunnerProcess

from nbpipe import component, pipeline
from nbpipe.errors import NbpipeError
from nbpipe.runner.config import RunnerConfig, is_loopback


@component(cache=False)
def environment() -> dict:
    import os

    return dict(os.environ)


@pipeline
def show_env():
    environment()


@component(cache=False)
def spawn_daemon(pidfile: str) -> None:
    """Start a grandchild that ignores SIGTERM and leaves the session, then wait to be cancelled."""
    import subprocess
    import sys
    import time

    code = ("import os, signal, time, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); os.setsid(); "
            "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); os.rename(sys.argv[1] + '.tmp', sys.argv[1]); "
            "time.sleep(600)")
    subprocess.Popen([sys.executable, "-c", code, pidfile])
    while True:
        time.sleep(0.05)


@component(cache=False)
def double_fork(pidfile: str) -> None:
    """The classic daemon: fork, setsid, fork again and the middle process exits at once (its child
    is re-parented before anything polling the step's tree could see it)."""
    import os
    import signal
    import time

    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open(pidfile + ".tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            time.sleep(600)
        os._exit(0)
    while True:
        time.sleep(0.05)


@pipeline
def daemonizing(pidfile: str = ""):
    spawn_daemon(pidfile=pidfile)


@pipeline
def classic_daemon(pidfile: str = ""):
    double_fork(pidfile=pidfile)


@pytest.fixture(scope="module")
def secret_runner(tmp_path_factory: pytest.TempPathFactory):
    old = os.umask(0o022)  # a usual shell umask: the runner must not rely on it
    try:
        r = RunnerProcess(tmp_path_factory.mktemp("sec") / "data", token="the-runner-token",
                          extra_env={"NBPIPE_S3_SECRET_KEY": "s3-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret",
                                     "MY_PASSED": "passed-value", "MY_OTHER": "kept-out",
                                     "NBPIPE_STEP_ENV_PASS": "MY_PASSED"}).start()
    finally:
        os.umask(old)
    yield r
    r.stop()


def test_a_loopback_runner_needs_its_token(nb_runner) -> None:
    assert httpx.get(f"{nb_runner.url}/api/v1/runs").status_code == 401
    assert httpx.get(f"{nb_runner.url}/api/v1/runs", headers=nb_runner.headers()).status_code == 200
    assert httpx.get(f"{nb_runner.url}/api/v1/health").status_code == 200  # probes stay open
    assert stat.S_IMODE(os.stat(nb_runner.ready_file).st_mode) == 0o600
    assert nb_runner.token not in " ".join(psutil.Process(nb_runner.pid).cmdline())


def test_dns_rebinding_and_cross_site_requests_are_refused(nb_runner, nb_client) -> None:
    from test_runner_robust import simple

    run = nb_client.submit(simple, {"x": 3}).wait(timeout=60)
    auth = nb_runner.headers()
    rebound = httpx.get(f"{nb_runner.url}/api/v1/runs", headers={**auth, "Host": "attacker.example"})
    assert rebound.status_code == 403 and "DNS-rebinding" in rebound.json()["error"]
    put = httpx.put(f"{nb_runner.url}/api/v1/packages/{'0' * 64}", content=b"x",
                    headers={**auth, "Host": "attacker.example:8765"})
    assert put.status_code == 403
    before = len(nb_client.runs(limit=1000))
    for path in (f"/api/v1/runs/{run.id}/rerun", f"/api/v1/runs/{run.id}/cancel"):
        for headers in ({"Origin": "http://attacker.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
            resp = httpx.post(f"{nb_runner.url}{path}", content=b'{"from_step": null}',
                              headers={**auth, **headers, "Content-Type": "text/plain"})
            assert resp.status_code == 403, (path, headers, resp.text)
    assert len(nb_client.runs(limit=1000)) == before  # nothing was re-run
    same_origin = httpx.get(f"{nb_runner.url}/api/v1/runs", headers={**auth, "Origin": nb_runner.url})
    assert same_origin.status_code == 200


def test_an_empty_or_unknown_host_is_not_loopback() -> None:
    assert not is_loopback("") and not is_loopback("0.0.0.0") and not is_loopback("attacker.example")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    for host in ("", "0.0.0.0", "::"):
        with pytest.raises(NbpipeError, match="without a token"):
            RunnerConfig(host=host).check()


@pytest.mark.parametrize("how", ["NBPIPE_HOST=", "--host ''", "--host 0.0.0.0"])
def test_a_runner_asked_for_all_interfaces_without_a_token_does_not_start(tmp_path, how) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("NBPIPE_TOKEN", "NBPIPE_TOKEN_FILE")}
    args = [sys.executable, "-m", "nbpipe.runner", "--port", "0", "--data-dir", str(tmp_path / "data")]
    if how == "NBPIPE_HOST=":
        env["NBPIPE_HOST"] = ""
    else:
        args += ["--host", how.split()[1].strip("'")]
    for cmd in (args, [str(Path(sys.executable).parent / "nbpipe"), "runner", "start", *args[3:]]):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "without a token" in out.stderr, (cmd, out.stderr)
    assert not (tmp_path / "data" / "nbpipe.db").exists()


def test_the_token_file_is_read_and_the_token_never_reaches_steps(tmp_path) -> None:
    tf = tmp_path / "token"
    tf.write_text("from-a-file\n")
    r = RunnerProcess(tmp_path / "data", extra_env={"NBPIPE_TOKEN_FILE": str(tf)}).start()
    try:
        assert r.token == "from-a-file"
        assert httpx.get(f"{r.url}/api/v1/runs", headers={"Authorization": "Bearer from-a-file"}).status_code == 200
        env = r.client().submit(show_env).wait(timeout=60).outputs("environment")["output"]
        assert "from-a-file" not in json.dumps(env) and "NBPIPE_TOKEN_FILE" not in env
    finally:
        r.stop()


def test_steps_get_an_allow_listed_environment(secret_runner) -> None:
    env = secret_runner.client().submit(show_env).wait(timeout=60).outputs("environment")["output"]
    for name in ("NBPIPE_TOKEN", "NBPIPE_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "MY_OTHER"):
        assert name not in env, name
    text = json.dumps(env)
    assert "the-runner-token" not in text and "s3-secret" not in text and "aws-secret" not in text
    assert env["MY_PASSED"] == "passed-value" and "PATH" in env and env["NBPIPE_RUN_ID"]


def test_runner_files_are_owner_only_under_umask_022(secret_runner) -> None:
    secret_runner.client().submit(show_env).wait(timeout=60)
    data = secret_runner.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    loose = []
    for p in data.rglob("*"):
        if p.name == "runner.log":  # the test harness's own file, opened before the runner starts
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o077:
            loose.append((str(p.relative_to(data)), oct(mode)))
    assert loose == []


@pytest.mark.parametrize("classic", [False, True], ids=["setsid-grandchild", "double-fork-daemon"])
def test_a_setsid_grandchild_dies_on_cancel(nb_client, tmp_path, classic) -> None:
    pidfile = tmp_path / "daemon.pid"
    run = nb_client.submit(classic_daemon if classic else daemonizing, {"pidfile": str(pidfile)})
    deadline = time.monotonic() + 60
    while not pidfile.exists():  # the grandchild wrote its pid (atomically)
        assert time.monotonic() < deadline, "the step did not start its grandchild"
        time.sleep(0.05)
    daemon = psutil.Process(int(pidfile.read_text()))
    assert daemon.is_running()
    run.cancel()
    assert run.wait(timeout=60, raise_on_failure=False).snapshot()["state"] == "cancelled"
    daemon.wait(timeout=30)  # raises psutil.TimeoutExpired if it survived
    assert not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE


FILL = {"run_id": None, "step": "plus_one", "digest": "0" * 64, "sid": "no-such-schedule", "name": "no-such-endpoint",
        "version": "1"}


def test_every_operation_checks_host_origin_and_token(nb_runner, nb_client, tmp_path) -> None:
    """The same checks on every route, including those added after the first audit (schedules,
    lineage, dashboard, endpoints, audit): no token is a 401, a rebound Host and a cross-site
    request are 403s, and none of them changes anything."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    from nbpipe.runner.server import OPEN_PATHS, SAFE_METHODS, create_app
    from test_runner_robust import simple

    # every route the app serves is in its OpenAPI document (so this test and schemathesis see it)
    app = create_app(RunnerConfig(data_dir=tmp_path / "app"))
    assert not [r for r in app.routes if isinstance(r, Mount)]
    served = {(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods}
    spec = httpx.get(f"{nb_runner.url}/openapi.json", timeout=30).json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served - documented == set()

    run = nb_client.submit(simple, {"x": 5}).wait(timeout=60)
    auth = nb_runner.headers()

    def everything() -> list:
        return [httpx.get(f"{nb_runner.url}/api/v1/{what}", headers=auth, timeout=30).json()
                for what in ("runs?limit=1000", "schedules", "endpoints", "audit")]

    before = everything()
    checked = 0
    for method, path in sorted(documented):
        url = nb_runner.url + path.format(**{**FILL, "run_id": run.id})
        body = {"content": b'{"from_step": null, "package": null}'}
        if path not in OPEN_PATHS:
            resp = httpx.request(method, url, timeout=30, **body)
            assert resp.status_code == 401, (method, path, resp.status_code)
        for port in ("", f":{nb_runner.url.rsplit(':', 1)[1]}"):
            resp = httpx.request(method, url, headers={**auth, "Host": f"attacker.example{port}"}, timeout=30, **body)
            assert resp.status_code == 403, (method, path, port, resp.status_code)
        cross = [{"Origin": "http://attacker.example"}, {"Origin": "null"}]
        if method not in SAFE_METHODS:
            cross.append({"Sec-Fetch-Site": "cross-site"})
        for headers in cross:
            resp = httpx.request(method, url, headers={**auth, **headers, "Content-Type": "text/plain"}, timeout=30,
                                 **body)
            assert resp.status_code == 403, (method, path, headers, resp.status_code)
        checked += 1
    print(f"\n{checked} operations: 401 without the token, 403 for a rebound Host and a cross-site request")
    assert checked == len(documented) >= 29
    assert everything() == before  # nothing was created, cancelled, re-run or deleted (the audit log says so too)
    assert nb_client.get_run(run.id)["state"] == "succeeded"


def _proc_text(pid: int, what: str) -> bytes:
    return Path(f"/proc/{pid}/{what}").read_bytes()


def test_the_embedded_runner_token_is_in_a_runtime_file_only(nb_home, monkeypatch) -> None:
    """The SDK starts the runner with no token anywhere but its 0600 runtime files; the SDK, the CLI
    and the Lab server extension read it from there."""
    import subprocess
    import sys

    from nbpipe._embedded import nbpipe_home
    from nbpipe.client import Client
    from nbpipe.lab.connection import RunnerConnection

    monkeypatch.delenv("NBPIPE_TOKEN", raising=False)
    monkeypatch.delenv("NBPIPE_RUNNER_URL", raising=False)
    sdk = Client()
    info = json.loads((nbpipe_home() / "runner.json").read_text())
    token, pid = info["token"], int(info["pid"])
    assert len(token) >= 32
    assert token.encode() not in _proc_text(pid, "cmdline") and token.encode() not in _proc_text(pid, "environ")
    for f in [nbpipe_home() / "runner.json", *(nbpipe_home() / "runtime").glob("runner-*.json")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE((nbpipe_home() / "runtime").stat().st_mode) == 0o700
    assert sdk.runs() == []
    env = sdk.submit(show_env).wait(timeout=60).outputs("environment")["output"]
    assert token not in json.dumps(env)
    # the CLI, pointed at the URL with no token given: reads the runtime file
    cli = subprocess.run([str(Path(sys.executable).parent / "nbpipe"), "--runner", info["url"], "runner", "status"],
                         capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "NBPIPE_TOKEN"})
    assert cli.returncode == 0 and "ok" in cli.stdout, cli.stderr
    # the Lab server extension: embedded by default, and a runner URL set with no token
    assert RunnerConnection().client().runs()[0]["state"] == "succeeded"
    monkeypatch.setenv("NBPIPE_RUNNER_URL", info["url"])
    assert RunnerConnection().status()["reachable"]
    assert RunnerConnection().client().runs()[0]["state"] == "succeeded"


def test_the_embedded_runner_files_are_owner_only_under_umask_022(nb_home, monkeypatch) -> None:
    """NBPIPE_HOME may be a folder others can list (made by the user, 0755): every file the SDK and its
    runner write there (lock, log, runtime files, the data dir's) is owner-only anyway."""
    from nbpipe.client import Client
    from test_runner_robust import simple

    monkeypatch.delenv("NBPIPE_RUNNER_URL", raising=False)
    nb_home.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        Client().submit(simple, {"x": 2}).wait(timeout=60)
    finally:
        os.umask(old)
    loose = sorted(f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p.relative_to(nb_home)}" for p in nb_home.rglob("*")
                   if stat.S_IMODE(p.lstat().st_mode) & 0o077 and not p.is_symlink())
    assert loose == []


@pytest.mark.parametrize("how", ["nbpipe runner start", "python -m nbpipe.runner"])
def test_a_token_given_on_the_command_line_does_not_stay_there(tmp_path, how) -> None:
    import subprocess
    import sys

    secret = "cmdline-secret-token-0123456789"
    cmd = ([str(Path(sys.executable).parent / "nbpipe"), "runner", "start"] if how.startswith("nbpipe")
           else [sys.executable, "-m", "nbpipe.runner"])
    cmd += ["--port", "0", "--data-dir", str(tmp_path / "data"), "--token", secret]
    env = {k: v for k, v in os.environ.items() if k not in ("NBPIPE_TOKEN", "NBPIPE_TOKEN_FILE")}
    env["NBPIPE_HOME"] = str(tmp_path / "home")
    log = open(tmp_path / "runner.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        runtime = tmp_path / "home" / "runtime" / f"runner-{proc.pid}.json"  # execve keeps the pid
        deadline = time.monotonic() + 90
        while not runtime.exists():
            assert proc.poll() is None, (tmp_path / "runner.log").read_text()
            assert time.monotonic() < deadline, "the runner did not start"
            time.sleep(0.05)
        info = json.loads(runtime.read_text())
        assert secret.encode() not in _proc_text(proc.pid, "cmdline")
        assert secret not in " ".join(psutil.Process(proc.pid).cmdline())
        assert httpx.get(f"{info['url']}/api/v1/runs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        from nbpipe.client import Client

        out = Client(info["url"], token=secret).submit(show_env).wait(timeout=60).outputs("environment")["output"]
        assert secret not in json.dumps(out) and "NBPIPE_TOKEN" not in out
        assert "--token is visible" in (tmp_path / "runner.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
