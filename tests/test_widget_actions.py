"""The note a run graph re-run adds when notebook cells were edited but not run (the kernel's
pipeline is the code it ran, not the edit): the re-run still goes ahead, the note says what to do."""

from __future__ import annotations

from nbpipe.widgets.actions import unrun_edits


def test_edited_but_not_run_cells_are_named_with_what_to_do() -> None:
    pipe = object()  # the kernel's pipeline (only its presence matters here)
    assert unrun_edits({"edited_cells": [3]}, pipe) == (
        " Note: cell 3 was edited but not run, so this re-run does not use that edit: run it first, then re-run.")
    assert unrun_edits({"edited_cells": [5, 2, 5]}, pipe) == (
        " Note: cells 2, 5 were edited but not run, so this re-run does not use that edit: run them first, then re-run.")


def test_no_note_without_edits_or_without_a_kernel_pipeline() -> None:
    assert unrun_edits({}, object()) == ""
    assert unrun_edits({"edited_cells": ["3", True, 0, -1]}, object()) == ""
    # the run's own package is re-run: the notebook's edits were never going to be in it
    assert unrun_edits({"edited_cells": [3]}, None) == ""
