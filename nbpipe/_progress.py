"""Live run progress in a terminal, from the run's event stream (no polling).

On a TTY a rich table of steps redraws in place; elsewhere (CI logs, pipes) each state
change is one plain line. Non-goal: the notebook widget (see ``nbpipe.widgets``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from . import events as ev

ICON = {"pending": "·", "running": "▶", "retrying": "↻", "succeeded": "✓", "cached": "⚡", "failed": "✗",
        "cancelled": "⊘", "skipped": "–"}
COLOR = {"pending": "dim", "running": "cyan", "retrying": "yellow", "succeeded": "green", "cached": "green",
         "failed": "red", "cancelled": "magenta", "skipped": "dim"}


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


class Progress:
    """Applies events to a snapshot and renders it."""

    def __init__(self, snapshot: dict[str, Any], show_logs: bool = False):
        self.snap = snapshot
        self.steps = {s["name"]: s for s in snapshot["steps"]}
        self.show_logs = show_logs

    def apply(self, e: ev.Event) -> str | None:
        """Update state; return a one-line description for plain output."""
        s = self.steps.get(getattr(e, "step", ""), None)
        if isinstance(e, ev.StepStarted) and s is not None:
            s.update(state="running", attempt=e.attempt, started_at=s.get("started_at") or e.ts)
            return f"▶ {e.step} started" + (f" (attempt {e.attempt}/{e.max_attempts})" if e.max_attempts > 1 else "")
        if isinstance(e, ev.StepRetrying) and s is not None:
            s.update(state="retrying", reason=e.reason)
            return f"↻ {e.step} failed ({e.reason}); retrying in {e.delay:g} s"
        if isinstance(e, ev.StepWaiting) and s is not None:  # keeps its state; says what it waits for
            s.update(reason=e.reason)
            return f"· {e.step} {e.reason}"
        if isinstance(e, ev.StepFinished) and s is not None:
            s.update(state=e.state, duration=e.duration, reason=e.reason, traceback=e.traceback)
            extra = f" — {e.reason}" if e.reason and e.state != "cached" else ""
            return f"{ICON.get(e.state, '?')} {e.step} {e.state} {_fmt(e.duration) if e.state != 'cached' else ''}{extra}".rstrip()
        if isinstance(e, ev.StepLog) and self.show_logs:
            return "\n".join(f"  {e.step} │ {line}" for line in e.text.rstrip("\n").splitlines())
        if isinstance(e, ev.RunFinished):
            self.snap.update(state=e.state, reason=e.reason, duration=e.duration)
            return f"Run {self.snap['id']} {e.state} in {_fmt(e.duration)}" + (f": {e.reason}" if e.reason else "")
        return None

    def table(self) -> Any:
        from rich.table import Table

        t = Table(title=f"{self.snap['name']}  [dim]{self.snap['id']}[/]", title_justify="left", expand=False)
        t.add_column("", width=2)
        t.add_column("step")
        t.add_column("state")
        t.add_column("time", justify="right")
        t.add_column("note", overflow="fold", max_width=70)
        now = time.time()
        for s in self.steps.values():
            st = s["state"]
            dur = s.get("duration")
            if st == "running" and s.get("started_at"):
                dur = now - s["started_at"]
            note = s.get("reason", "") if st in ("failed", "retrying", "skipped", "pending") else ""
            if s.get("max_attempts", 1) > 1 and s.get("attempt"):
                note = f"attempt {s['attempt']}/{s['max_attempts']} " + note
            t.add_row(f"[{COLOR[st]}]{ICON[st]}[/]", s.get("display_name") or s["name"], f"[{COLOR[st]}]{st}[/]",
                      _fmt(dur) if st != "cached" else "", note)
        return t


def follow(run: Any, show_logs: bool = False, stream: Any = None) -> dict[str, Any]:
    """Render ``run``'s progress until it finishes; return the final snapshot."""
    out = stream or sys.stdout
    snap = run.snapshot()
    prog = Progress(snap, show_logs=show_logs)
    # The run's own events from its start: steps that finished before this first look (cache hits
    # resolved at submit, a fast first step) are shown too, and a run already final prints its lines.
    after = 0
    if getattr(out, "isatty", lambda: False)() and not show_logs:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        with Live(prog.table(), console=console, refresh_per_second=8, transient=False) as live:
            for e in run.events(after=after):
                prog.apply(e)
                live.update(prog.table())
                if isinstance(e, ev.RunFinished):
                    break
    else:
        n = len(prog.steps)
        print(f"Run {snap['id']} ({snap['pipeline']}): {n} step{'s' * (n != 1)}", file=out, flush=True)
        for e in run.events(after=after):
            line = prog.apply(e)
            if line:
                print(line, file=out, flush=True)
            if isinstance(e, ev.RunFinished):
                break
    return run.snapshot()  # type: ignore[no-any-return]
