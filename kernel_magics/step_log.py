"""What ``%nbpipe logs`` says when a step's log is empty: why, by the step's state.

"has written no logs yet" was right only for a step still running; a cancelled, cached or skipped
step will never write one. Non-goal: fetching or following logs (``%nbpipe logs`` does that).
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
