"""The ``nbpipe`` command line's answers to mistakes and to steps that did not run (a real process).

Found by the QA pass on the CLI: ``nbpipe logs RUN typo`` printed nothing and exited 0, a re-run
that failed again said only "failed", ``runs --state bogus`` listed nothing, ``--runner
localhost:8765`` ended in an httpx traceback, and ``runner status`` started the embedded runner
it was asked about (so it always answered "ok").
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PIPELINE = textwrap.dedent('''
    from nbpipe import component, pipeline

    @component(cache=False)
    def make(n: int) -> int:
        print("making", n)
        return n

    @component(cache=False)
    def check(x: int, fail: bool) -> int:
        if fail:
            raise ValueError("failing on purpose")
        return x

    @component(cache=False)
    def after(x: int) -> int:
        return x

    @component(cache=False)
    def wait_long(seconds: float = 60) -> int:
        import time
        time.sleep(seconds)
        return 0

    @pipeline
    def chain(n: int = 2, fail: bool = True):
        after(x=check(x=make(n=n).output, fail=fail).output)

    @pipeline
    def forever(seconds: float = 60):
        wait_long(seconds=seconds)
''')


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbpipe.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-errors") / "chain_pipeline.py"
    path.write_text(PIPELINE)
    return path


@pytest.fixture(scope="module")
def failed_run(nb_runner, script: Path) -> str:
    out = cli("--runner", nb_runner.url, "run", f"{script}:chain")
    assert out.returncode == 1, out.stderr
    return out.stdout.split()[1]  # "Run <id> (chain): 3 steps"


def test_logs_names_a_missing_step_or_attempt_and_says_why_a_step_has_none(nb_runner, failed_run: str) -> None:
    typo = cli("--runner", nb_runner.url, "logs", failed_run, "chek")
    assert typo.returncode == 1
    assert typo.stderr.strip() == f"nbpipe: Run {failed_run} has no step 'chek'. Its steps: make, check, after."

    attempt = cli("--runner", nb_runner.url, "logs", failed_run, "check", "--attempt", "5")
    assert attempt.returncode == 1
    assert f"Step 'check' of run {failed_run} has no attempt 5. It has 1 attempt(s)" in attempt.stderr

    skipped = cli("--runner", nb_runner.url, "logs", failed_run, "after")
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stderr.strip() == ("Step 'after' is skipped (upstream step 'check' failed): it has no log "
                                      "of its own in this run.")

    ran = cli("--runner", nb_runner.url, "logs", failed_run, "make")
    assert ran.stdout.startswith("making 2") and ran.stderr == ""


def test_a_rerun_that_fails_again_shows_the_step_traceback_and_the_logs_command(nb_runner, failed_run: str) -> None:
    out = cli("--runner", nb_runner.url, "rerun", failed_run, "--failed")
    assert out.returncode == 1
    rerun_id = out.stdout.split()[1]  # "re-run <id> of <run> from step 'check' ..."
    assert "Step 'check' failed: ValueError: failing on purpose" in out.stderr
    assert 'raise ValueError("failing on purpose")' in out.stderr
    assert f"Logs: nbpipe logs {rerun_id} check" in out.stderr


def test_runs_refuses_an_unknown_state_or_limit_in_the_cli_words(nb_runner) -> None:
    state = cli("--runner", nb_runner.url, "runs", "--state", "failde")
    assert state.returncode == 2
    assert "argument --state: invalid choice: 'failde' (choose from 'queued', 'running'" in state.stderr
    limit = cli("--runner", nb_runner.url, "runs", "--limit", "0")
    assert limit.returncode == 2
    assert "argument --limit: '0' is not a whole number of at least 1" in limit.stderr


def test_a_runner_url_without_scheme_is_one_line_not_a_traceback() -> None:
    out = cli("--runner", "localhost:8765", "runs")
    assert out.returncode == 1
    assert out.stderr.strip() == ("nbpipe: --runner 'localhost:8765' is not a runner URL. Use http://HOST:PORT, "
                                  "for example --runner http://127.0.0.1:8765.")


def test_runner_status_reports_a_stopped_embedded_runner_without_starting_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NBPIPE_RUNNER_URL", "NBPIPE_TOKEN")}
    env["NBPIPE_HOME"] = str(tmp_path)
    out = cli("runner", "status", env=env)
    assert out.returncode == 1
    assert out.stderr.startswith(f"No embedded runner is running (NBPIPE_HOME={tmp_path}). Start it with "
                                 "`nbpipe runner start --detach`")
    assert not (tmp_path / "runner.json").exists()  # nothing was started


def test_runs_and_compare_write_short_durations_in_ms(nb_runner, failed_run: str) -> None:
    import re

    row = next(line for line in cli("--runner", nb_runner.url, "runs").stdout.splitlines() if failed_run in line)
    assert re.search(r"\s\d+ ms\s", row), row  # a 20 ms run read "0.0 s"
    table = cli("--runner", nb_runner.url, "compare", failed_run, failed_run).stdout
    assert re.search(r"^\s*duration\s+\d+ ms\s", table, re.M), table  # was raw seconds: 0.02031


def test_ctrl_c_stops_following_not_the_run_and_says_so(nb_runner, script: Path) -> None:
    import signal

    from nbpipe import Client

    proc = subprocess.Popen([sys.executable, "-m", "nbpipe.cli", "--runner", nb_runner.url, "run", f"{script}:forever"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().split()[1]  # "Run <id> (forever): 1 steps"
        while "wait_long started" not in proc.stdout.readline():
            assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert f"Stopped following run {run_id}; it goes on in the runner. Cancel it with `nbpipe cancel {run_id}`" in err
    client = Client(nb_runner.url, token=nb_runner.token)
    assert client.get_run(run_id)["state"] == "running"  # the run went on
    client.cancel(run_id)
