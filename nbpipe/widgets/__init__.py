"""Notebook widgets: :class:`RunView`, the live graph of a run, :func:`show` and :func:`attach`.

Non-goal: rendering; ``run_view.js`` (shared with the Lab panel) draws, this side only feeds it.
"""

from __future__ import annotations

from .run_view import RunView, apply_event, attach, show

__all__ = ["RunView", "apply_event", "attach", "show"]
