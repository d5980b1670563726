"""The one error type of notebook export: :class:`ExportError`, which names the notebook cell.

Cells are numbered as a person counts them in the notebook, top to bottom from 1 (markdown
cells included); ``In [n]`` is added when the cell was run. Non-goal: wrapping errors of the
user's own code beyond naming the cell they came from.
"""

from __future__ import annotations

from ..errors import NbpipeError


class ExportError(NbpipeError, ValueError):
    """A notebook cannot be exported: what happened (with the cell), why, and what to do.

    Parameters
    ----------
    headline, detail, hint : str
        As for :class:`~nbpipe.errors.NbpipeError`.
    cell : int or None
        1-based position of the cell in the notebook, when the problem has one.
    """

    def __init__(self, headline: str, detail: str = "", hint: str = "", cell: int | None = None) -> None:
        self.cell = cell
        super().__init__(headline, detail, hint)


def where(cell: int, execution_count: int | None = None) -> str:
    """``"cell 4"`` or ``"cell 4 (In [7])"``: how messages name a cell."""
    return f"cell {cell}" + (f" (In [{execution_count}])" if execution_count else "")
