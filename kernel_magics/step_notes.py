"""What ``%nbpipe logs`` and ``%nbpipe pull`` say of a step when there is less to show than asked.

``logs``: an empty log, why by the step's state ("has written no logs yet" was right only for a step
still running; a cancelled, cached or skipped step will never write one). ``pull``: a failed step's
inputs were loaded, but its component is not defined in this kernel (after a restart), so the
call to reproduce it is ``%nbpipe debug``, not ``train.func(...)`` (a NameError).
Non-goal: fetching logs or loading values (the commands do that).
"""

from __future__ import annotations

from typing import Any


def no_log_note(run: Any, step: str) -> str:
    """``(step 'train' of run r… was reused from the cache: it has no log of its own in this run)`` and so on."""
    s = next((x for x in run.snapshot()["steps"] if x["name"] == step), {})
    state, reason = s.get("state", ""), (s.get("reason") or "").rstrip(".")
    why = f" ({reason})" if reason else ""
    head = f"(step '{step}' of run {run.id}"
    if state in ("running", "retrying"):
        return f"{head} has written no logs yet)"
    if state == "pending":
        return f"{head} has not started yet, so it has no log yet)"
    if not s.get("attempt"):  # it never ran in this run
        what = {"cached": "was reused from the cache", "skipped": "was skipped",
                "cancelled": "was cancelled before it started"}.get(state, f"is {state}")
        return f"{head} {what}{why}: it has no log of its own in this run)"
    ended = {"cancelled": " before it was cancelled", "failed": " before it failed"}.get(state, "")
    return f"{head} wrote nothing to its log{ended})"


def failed_pull_note(run_id: str, step: str, component: str, reason: str, names: dict[str, str], func: Any) -> str:
    """:func:`nbpipe.debugging.pull_note`, or, when the kernel has no ``component`` (``func`` None), the
    ``%nbpipe debug`` call that loads the function that ran."""
    from nbpipe.debugging import pull_note

    if func is not None:
        return pull_note(run_id, step, component, reason, names, func)
    return (f"Step '{step}' failed: {reason or 'see its logs'}. Its inputs are loaded; component '{component}' is not "
            f"defined in this kernel, so reproduce it with %nbpipe debug {run_id} {step} (it loads the function "
            "that ran), or run the cell that defines it and call "
            f"{component}.func({', '.join(f'{k}={v}' for k, v in names.items())}).")
