"""Errors that say what happened, why, and what to do.

Every error nbpipe raises on purpose is an :class:`NbpipeError` (or a subclass), built
from a one-line *headline*, an optional *detail* and a *hint* naming the fix.
Non-goal: wrapping third-party exceptions wholesale; only errors we can explain are ours.
"""

from __future__ import annotations


class NbpipeError(Exception):
    """Base class: ``headline`` (what happened), ``detail`` (why), ``hint`` (what to do)."""

    def __init__(self, headline: str, detail: str = "", hint: str = "") -> None:
        self.headline = headline
        self.detail = detail
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.headline]
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append(self.hint)
        return " ".join(p if p.endswith((".", "?", "!", ":")) else p + "." for p in parts)


class DefinitionError(NbpipeError, TypeError):
    """A component or pipeline definition is wrong (caught at definition time)."""


class PackageError(NbpipeError, ValueError):
    """A package file is malformed, hostile, too large or of an unknown version."""


class RunnerError(NbpipeError, RuntimeError):
    """The runner cannot be reached or refused a request."""


class StepFailed(NbpipeError, RuntimeError):
    """A step (and so its run) failed; carries the step's traceback."""

    def __init__(self, headline: str, detail: str = "", hint: str = "", traceback: str = "") -> None:
        self.traceback = traceback
        super().__init__(headline, detail, hint)

    def __str__(self) -> str:
        if self.traceback:
            return f"{self.message}\n\n{self.traceback.rstrip()}"
        return self.message
