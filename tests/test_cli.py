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


CHAIN = textwrap.dedent('''
    import os
    from nbpipe import component, pipeline

    @component
    def fetch(n: int) -> dict:
        return {"n": n, "pid": os.getpid(), "attempt": int(os.environ["NBPIPE_ATTEMPT"])}

    @component
    def fit(d: dict) -> dict:
        return {"n": d["n"] * 2, "pid": os.getpid(), "attempt": int(os.environ["NBPIPE_ATTEMPT"])}

    @component
    def score(d: dict) -> dict:
        return {"n": d["n"] + 1, "pid": os.getpid(), "attempt": int(os.environ["NBPIPE_ATTEMPT"])}

    @pipeline
    def chain(n: int = 3):
        score(d=fit(d=fetch(n=n).output).output)
''')


def test_rerun_from_re_executes_the_step_and_downstream_and_reuses_upstream(nb_runner, tmp_path) -> None:
    from nbpipe.client import Client

    script = tmp_path / "chain_pipeline.py"
    script.write_text(CHAIN)
    first_id = nbpipe_cli("run", f"{script}:chain", "-p", "n=4", url=nb_runner.url).stdout.split()[1]
    out = nbpipe_cli("rerun", first_id, "--from", "fit", url=nb_runner.url)
    assert f"of {first_id} from step 'fit'" in out.stdout and "succeeded in" in out.stdout
    again_id = out.stdout.split()[1]
    client = Client(nb_runner.url, token=nb_runner.token)
    first, again = client.run(first_id), client.run(again_id)
    steps = again.steps
    assert steps["fetch"]["state"] == "cached" and steps["fetch"]["attempt"] == 0
    assert again.output("fetch") == first.output("fetch")  # reused: the first run's process made it
    for name in ("fit", "score"):  # executed again by new processes (an attempt each), no cache hit
        assert steps[name]["state"] == "succeeded" and steps[name]["attempt"] == 1, steps[name]
        assert again.output(name)["pid"] != first.output(name)["pid"]
    assert again.output("score")["n"] == 9
    shown = nbpipe_cli("show", again_id, url=nb_runner.url).stdout
    assert "re-executed: re-run from 'fit'" in shown or steps["fit"]["reason"] == "re-executed: re-run from 'fit'"

    none = nbpipe_cli("rerun", first_id, "--failed", url=nb_runner.url, check=False)
    assert none.returncode == 1 and f"Run {first_id} has no failed step to re-run from" in none.stderr
    bad = nbpipe_cli("rerun", first_id, "--from", "fitt", url=nb_runner.url, check=False)
    assert bad.returncode == 1 and "has no step 'fitt'" in bad.stderr and "fetch, fit, score" in bad.stderr


def test_rerun_from_failed_with_the_fixed_file(nb_runner, tmp_path) -> None:
    from nbpipe.client import Client

    script = tmp_path / "fixable_pipeline.py"
    script.write_text(CHAIN.replace('"n": d["n"] * 2', '"n": 10 // (d["n"] - 4)'))
    failed = nbpipe_cli("run", f"{script}:chain", "-p", "n=4", url=nb_runner.url, check=False)
    assert failed.returncode == 1 and "ZeroDivisionError" in failed.stderr
    first_id = failed.stdout.split()[1]
    script.write_text(CHAIN.replace('"n": d["n"] * 2', '"n": 10 // max(1, d["n"] - 4)'))  # the fix
    out = nbpipe_cli("rerun", first_id, "--failed", "--with", f"{script}:chain", url=nb_runner.url)
    assert f"of {first_id} from step 'fit'" in out.stdout
    again = Client(nb_runner.url, token=nb_runner.token).run(out.stdout.split()[1])
    first = Client(nb_runner.url, token=nb_runner.token).run(first_id)
    assert again.steps["fetch"]["state"] == "cached" and again.output("fetch") == first.output("fetch")
    assert again.output("fit")["n"] == 10 and again.output("score")["n"] == 11
