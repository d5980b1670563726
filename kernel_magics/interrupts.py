"""Interrupting the kernel while it waits on a run stops the waiting, not the run — and says so.

``run.wait()``, ``%nbpipe pull`` and a graph's wait block the kernel until a run ends. The kernel's
Interrupt raises ``KeyboardInterrupt`` somewhere inside nbpipe's client; IPython would show a screen
of httpx and nbpipe frames and leave the user guessing whether the run was cancelled. This handler
shows one screen instead: the cell line, which run it stopped waiting for, that the run goes on in
the runner (as documented), and the commands to cancel it or wait again. Interrupting a submit
(``nbpipe.run``, ``%nbpipe run``: packaging a large capture, uploading it) says the same way whether a run
was started, and so does interrupting the wait for the embedded runner's first start.

Non-goal: cancelling on interrupt. A run belongs to the runner; a kernel that stops waiting
(or restarts) does not end it.
"""

from __future__ import annotations

from typing import Any

from nbpipe.errors import NbpipeError


class WaitInterrupted(KeyboardInterrupt):
    """A ``KeyboardInterrupt`` while waiting on a run, shown as one screen (see the module docstring)."""

    _render_traceback_ = NbpipeError._render_traceback_


WaitInterrupted.__name__ = WaitInterrupted.__qualname__ = "KeyboardInterrupt"  # as the user knows it


# the modules whose frames wait on a run / package and submit one (by module, not file name: a user's
# own client.py is neither, and a module that moves keeps its name here)
WAITERS = {"nbpipe.client", "nbpipe.run_handle", "nbpipe.widgets.run_view", "kernel_magics.commands"}
SUBMITTERS = {"nbpipe.client", "nbpipe.package", "nbpipe.pipeline"}


def waited_run(tb: Any) -> Any:
    """The run a traceback was waiting on (a client ``Run`` or a graph's run in its frames), or None."""
    from nbpipe.client import Run

    found = None
    while tb is not None:
        for name in ("self", "run"):
            value = tb.tb_frame.f_locals.get(name)
            value = getattr(value, "run", value) if not isinstance(value, Run) else value  # a RunView
            if isinstance(value, Run) and tb.tb_frame.f_globals.get("__name__") in WAITERS:
                found = value
        tb = tb.tb_next
    return found


def message(run: Any) -> str:
    try:
        snap = run.snapshot()
        state, pipeline = str(snap.get("state")), str(snap.get("pipeline") or "")
    except Exception:  # noqa: BLE001 - the runner went away: say what we know
        return (f"stopped waiting for run {run.id}; the runner did not answer, so its state is unknown. "
                f"%nbpipe runs lists it once the runner is back.")
    what = f"{run.id} ({pipeline + ', ' if pipeline else ''}{state})"
    if state in ("succeeded", "failed", "cancelled"):
        return f"stopped waiting for run {what}; it had already ended. %nbpipe pull {run.id} loads its outputs."
    return (f"stopped waiting for run {what}; the run goes on in the runner. %nbpipe cancel {run.id} stops it; "
            f"run.wait() or %nbpipe pull {run.id} waits for it again.")


# the first use of the embedded runner waits seconds for it to start (any command, not only a submit)
STARTING_RUNNER = ("stopped waiting for the embedded nbpipe runner to start (its first start takes a few seconds); "
                   "it goes on starting in the background, and nothing was submitted. Run the cell again.")


def submit_stage(tb: Any) -> str:
    """What an interrupted submit (``nbpipe.run``, ``%nbpipe run``/``rerun``, ``build_package``) was doing,
    said for the user, or "" when the traceback is no submit's."""
    from nbpipe.pipeline import Pipeline

    name, stage = "", ""
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        if frame.f_globals.get("__name__") == "nbpipe._embedded" and code.co_name == "ensure_local_runner":
            return STARTING_RUNNER
        if frame.f_globals.get("__name__") in SUBMITTERS:
            pipe = frame.f_locals.get("pipeline", frame.f_locals.get("self"))
            name = name or (pipe.name if isinstance(pipe, Pipeline) else "")
            if code.co_name in ("build_package", "_package_bytes", "capture") and not stage:
                stage = "packaging"
            elif code.co_name == "upload":
                stage = "uploading"
            elif code.co_name == "_post_json" and frame.f_locals.get("path") == "/api/v1/runs":
                stage = "starting"
        tb = tb.tb_next
    what = f"pipeline '{name}'" if name else "the pipeline"
    if stage == "starting":
        return (f"stopped submitting {what} while the runner was starting its run: it may have started. "
                "%nbpipe runs lists the runner's runs (%nbpipe cancel RUN stops one).")
    if stage:
        doing = "packaging it" if stage == "packaging" else "uploading its package"
        return f"stopped submitting {what} while {doing}; no run was started. Run the cell again to submit it."
    return ""


def on_interrupt(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> None:
    """IPython's custom exception handler for KeyboardInterrupt: one screen when a run was being waited
    on or a pipeline submitted."""
    run = waited_run(tb)
    text = message(run) if run is not None else submit_stage(tb)
    if not text:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return
    exc = WaitInterrupted(text).with_traceback(tb)
    shell.showtraceback((WaitInterrupted, exc, tb), tb_offset=tb_offset)


def register(shell: Any) -> None:
    """Install the handler unless the user (or another extension) has one of their own."""
    if not getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((KeyboardInterrupt,), on_interrupt)
