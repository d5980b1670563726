"""What ``%nbpipe export`` says when the saved notebook it exports is not the code this kernel runs.

``%nbpipe export`` builds the *saved* notebook in a fresh process (the same bytes anywhere). A cell the
user edited and ran but did not save is in the kernel and not in the file, so the package silently
held the old code. The exported package's components are compared with the kernel's components of
the same name, by their code digest (stable across processes): a difference is named, with the fix.

Non-goals: comparing captured globals (a saved notebook's constants may differ from values the user
changed by hand, and export skips compute cells on purpose), failing the export.
"""

from __future__ import annotations

import shlex
from typing import Any


def quoted(path: str) -> str:
    """A path for the "export again" command line, which is then ``str.format``-ed with the image name."""
    return shlex.quote(path).replace("{", "{{").replace("}", "}}")


def kernel_components(namespace: dict[str, Any], plain_cells: list[Any]) -> dict[str, Any]:
    """The kernel's components by component name: variables, pipelines' steps, plain ``%%component`` cells."""
    from nbpipe.component import Component
    from nbpipe.pipeline import Pipeline

    found: dict[str, Any] = {}
    for value in list(namespace.values()):
        if isinstance(value, Component):
            found.setdefault(value.name, value)
        elif isinstance(value, Pipeline):
            for step in value.steps.values():
                found.setdefault(step.component.name, step.component)
    for cell in plain_cells:
        found.setdefault(cell.component.name, cell.component)
    return found


def unsaved_edits(payload: bytes, namespace: dict[str, Any], plain_cells: list[Any]) -> list[str]:
    """Names of the exported components whose code differs from this kernel's component of that name."""
    from nbpipe.errors import NbpipeError
    from nbpipe.package import read_package

    try:
        spec = read_package(payload).spec
    except NbpipeError:  # a KFP export's YAML: nothing to compare here
        return []
    mine = kernel_components(namespace, plain_cells)
    differ = []
    for comp in spec["components"].values():
        kernel = mine.get(comp.get("name"))
        if kernel is None:
            continue
        try:
            code = kernel.digest_parts(kernel.capture())["code"]
        except NbpipeError:  # it cannot be captured now: the run would say so, not export
            continue
        if code != (comp.get("digest_parts") or {}).get("code"):
            differ.append(str(comp["name"]))
    return sorted(set(differ))


def unsaved_note(names: list[str], notebook: str) -> str:
    """The note for :func:`unsaved_edits`' names ('' if none)."""
    if not names:
        return ""
    which = ", ".join(f"'{n}'" for n in names)
    one = len(names) == 1
    return (f"Note: this kernel's {which} differ{'s' * one} from the saved {notebook} (a cell edited and run but "
            f"not saved?); the export holds the saved version. Save the notebook and export again, or add "
            "--from-kernel to package the kernel's pipeline.")
