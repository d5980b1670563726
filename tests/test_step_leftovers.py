"""A step's processes end with the step, as a pod's do when its container ends (local executor).

Real runner, real zygote-forked step processes. A background process the step started and never
waited for is killed when the step ends, and the step's log says so; a step that leaves nothing
behind gets no such line. (A process that also left the step's session with ``setsid()`` is ended
only if the runner's process tracker saw it; that is covered by the timeout/cancel tests.)
"""

from __future__ import annotations

from test_runner import _wait_gone

from nbpipe import component, pipeline


@component(cache=False)
def leave_behind(pidfile: str) -> int:
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    with open(pidfile, "w") as fh:
        fh.write(str(child.pid))
    print("started a background sleep", flush=True)
    return 7


@component(cache=False)
def tidy(x: int) -> int:
    import subprocess

    subprocess.run(["true"], check=True)
    return x + 1


def test_what_a_succeeded_step_left_running_ends_with_it_and_its_log_says_so(nb_client, tmp_path) -> None:
    pidfile = tmp_path / "bg.pid"

    @pipeline
    def p():
        tidy(x=leave_behind(pidfile=str(pidfile)).output)

    run = nb_client.submit(p).wait(timeout=120)
    assert run.state == "succeeded" and run.output("tidy") == 8
    pid = int(pidfile.read_text())
    assert _wait_gone(pid, 30), "the step's background process outlived it"
    log = run.logs("leave_behind")
    assert "started a background sleep" in log
    assert "stopped the processes this step left running" in log
    assert "left running" not in run.logs("tidy")  # nothing left behind: no note

    again = nb_client.submit(p).wait(timeout=120)  # the user runs it again: same outcome, new process
    assert again.state == "succeeded" and int(pidfile.read_text()) != pid
    assert _wait_gone(int(pidfile.read_text()), 30)
