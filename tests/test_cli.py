"""The ``nbpipe`` command line, run as a user runs it (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

PIPELINE = textwrap.dedent('''
    from nbpipe import component, pipeline

    @component(cache=False)
    def greet(name: str, times: int = 1) -> str:
        print("greeting", name)
        return ("hello " + name + " ") * times

    @component(cache=False)
    def shout(text: str, loud: bool = False) -> str:
        return text.upper() if loud else text

    @component(cache=False)
    def wait_long(seconds: float = 60) -> int:
        import time
        time.sleep(seconds)
        return 0

    @pipeline
    def hello(name: str = "world", times: int = 1, loud: bool = False):
        shout(text=greet(name=name, times=times).output, loud=loud)

    @pipeline
    def forever(seconds: float = 60):
        wait_long(seconds=seconds)
''')


def nbpipe_cli(*args: str, url: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbpipe.cli", "--runner", url, *args], capture_output=True,
                          text=True, check=check, timeout=120)


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "hello_pipeline.py"
    path.write_text(PIPELINE)
    return str(path)


def test_run_with_typed_params_then_runs_show_logs(nb_runner, script: str) -> None:
    out = nbpipe_cli("run", f"{script}:hello", "--param", "name=nb", "-p", "times=2", "-p", "loud=true",
                     url=nb_runner.url)
    assert "✓ greet succeeded" in out.stdout and "succeeded in" in out.stdout
    run_id = out.stdout.split()[1]
    runs = nbpipe_cli("runs", url=nb_runner.url).stdout
    assert run_id in runs and "hello" in runs
    show = nbpipe_cli("show", run_id, url=nb_runner.url).stdout
    assert "HELLO NB HELLO NB" in show
    logs = nbpipe_cli("logs", run_id, "greet", url=nb_runner.url).stdout
    assert "greeting nb" in logs


def test_bad_param_and_bad_target_fail_in_one_line(nb_runner, script: str) -> None:
    bad = nbpipe_cli("run", f"{script}:hello", "-p", "times=many", url=nb_runner.url, check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == "nbpipe: --param value 'many' is not a valid int."
    unknown = nbpipe_cli("run", f"{script}:hello", "-p", "colour=red", url=nb_runner.url, check=False)
    assert "has no parameter 'colour'" in unknown.stderr and "Its parameters are: name, times, loud" in unknown.stderr
    missing = nbpipe_cli("run", "nope.nbpipe", url=nb_runner.url, check=False)
    assert missing.returncode == 1 and "Cannot read package nope.nbpipe" in missing.stderr


def test_detach_then_cancel(nb_runner, script: str) -> None:
    out = nbpipe_cli("run", f"{script}:forever", "--detach", url=nb_runner.url)
    run_id = out.stdout.strip()
    time.sleep(0.5)
    assert "cancelling" in nbpipe_cli("cancel", run_id, url=nb_runner.url).stdout
    from nbpipe.client import Client

    assert Client(nb_runner.url).run(run_id).wait(timeout=30).state == "cancelled"


def test_run_a_package_file(nb_runner, script: str, tmp_path) -> None:
    pkg = tmp_path / "hello.nbpipe"
    code = f"import sys; sys.path.insert(0, {os.path.dirname(script)!r}); import hello_pipeline, nbpipe; " \
           f"nbpipe.build_package(hello_pipeline.hello, {str(pkg)!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = nbpipe_cli("run", str(pkg), "-p", "name=pkg", url=nb_runner.url)
    assert "succeeded" in out.stdout
