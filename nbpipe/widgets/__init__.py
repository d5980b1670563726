"""Notebook widgets: :class:`RunView`, the live graph of a run, and :func:`show`.

Non-goal: rendering; ``run_view.js`` (shared with the Lab panel) draws, this side only feeds it.
"""

from __future__ import annotations

from .run_view import RunView, apply_event, show

__all__ = ["RunView", "apply_event", "show"]
