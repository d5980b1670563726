"""Which steps of a run may start: kept up to date as steps finish, so a tick costs O(steps that
could start now), not O(steps in the run) — a 10,000-step run ticks as cheaply as a 10-step one.

A *candidate* is a step that is pending or retrying and whose upstream steps are all final; the
scheduler's tick decides what each candidate does (start, wait for its retry, be skipped after a
failed upstream). Built from the steps' states on a run's first tick (also after a restart) and
told of every step that becomes final (``Scheduler._set_step_final``) or goes back to retrying.
Runs with control flow (loops, conditions, exit handlers) add steps as they go and are ticked
over all their steps instead (see :mod:`.expand`). Non-goals: states themselves, writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import events as ev

if TYPE_CHECKING:
    from .scheduler import StepCtx


class ReadySet:
    def __init__(self, steps: dict[str, "StepCtx"]):
        self.size = len(steps)
        self.final = 0  # steps in a final state
        self.down: dict[str, list[str]] = {}  # step -> steps that take its outputs
        self.waiting: dict[str, int] = {}  # unfinished step -> its upstream steps not final yet
        self.candidates: dict[str, None] = {}  # ordered set, in the run's step order
        for name, st in steps.items():
            for u in set(st.upstream):
                self.down.setdefault(u, []).append(name)
        for name, st in steps.items():
            if st.state in ev.STEP_FINAL:
                self.final += 1
                continue
            left = sum(1 for u in set(st.upstream) if steps[u].state not in ev.STEP_FINAL)
            self.waiting[name] = left
            if left == 0 and st.state in ("pending", "retrying"):
                self.candidates[name] = None

    def finished(self, name: str) -> None:
        """``name`` became final: its downstream steps may now be ready (or must be skipped)."""
        self.final += 1
        self.candidates.pop(name, None)
        self.waiting.pop(name, None)
        for d in self.down.get(name, ()):
            left = self.waiting.get(d)
            if left is not None:
                self.waiting[d] = left - 1
                if left == 1:
                    self.candidates[d] = None

    def retrying(self, name: str) -> None:
        self.candidates[name] = None

    def settle(self, st: "StepCtx") -> None:
        """After a tick looked at candidate ``st``: no longer one once it started or finished."""
        if st.state not in ("pending", "retrying"):
            self.candidates.pop(st.name, None)

    @property
    def done(self) -> bool:
        return self.final >= self.size

    def idle(self, steps: int) -> bool:
        """Nothing can start or finish in a tick (e.g. a chain's one step is running): the tick needs no
        transaction. ``steps``: the run's step count now (a grown run is re-indexed first)."""
        return not self.candidates and not self.done and self.size == steps
