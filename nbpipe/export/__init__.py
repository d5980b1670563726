"""Export a notebook to an nbpipe package or a Kubeflow Pipelines v2 pipeline YAML.

``export_notebook("train.ipynb")`` reads the notebook, keeps only the code that defines the
pipeline (components, the pipeline, imports, helpers, constants; see
:mod:`nbpipe.export.notebook`), runs that code in a fresh Python process and returns the
package bytes — the same bytes every time for the same notebook. ``format="kfp"`` turns that
package into KFP pipeline YAML (:mod:`nbpipe.export.kfp`). :func:`describe_package` prints
what a package holds without unpickling it.

Non-goals: running pipelines (see :func:`nbpipe.run`), exporting from a live kernel's state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .describe import describe_package
from .errors import ExportError
from .kfp import package_to_kfp
from .notebook import Program, read_notebook, select_program

__all__ = ["ExportError", "build_program", "describe_package", "export_notebook", "package_to_kfp", "plan_export"]

FORMATS = ("nbpipe", "kfp")


def plan_export(path: str | os.PathLike[str], pipeline: str | None = None,
                content: dict[str, Any] | None = None) -> Program:
    """Return what :func:`export_notebook` would run, without running anything.

    Parameters
    ----------
    path : path of the ``.ipynb`` file.
    pipeline : name of the pipeline when the notebook defines several.
    content : the notebook's JSON to use instead of the file (an editor's unsaved model).
    """
    return select_program(read_notebook(path, content), pipeline)


def build_program(program: Program, cwd: str | os.PathLike[str], format: str = "nbpipe",
                  python: str | None = None, image: str | None = None) -> bytes:
    """Build a planned :class:`Program` in a fresh process (in ``cwd``, the notebook's folder);
    ``image``: the KFP step image in place of nbpipe's default (see :mod:`.kfp_image`)."""
    if format not in FORMATS:
        raise ExportError(f"Unknown export format {format!r}", hint=f"Use one of: {', '.join(FORMATS)}.")
    from .builder import build_in_fresh_process

    data = build_in_fresh_process(program, cwd=cwd, python=python)
    return package_to_kfp(data, image).encode("utf-8") if format == "kfp" else data


def export_notebook(path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
                    format: str = "nbpipe", pipeline: str | None = None, python: str | None = None,
                    content: dict[str, Any] | None = None, image: str | None = None) -> bytes:
    """Export a notebook's pipeline, built in a fresh process from the cells that define it.

    Parameters
    ----------
    path : str or path
        The ``.ipynb`` file.
    output : str or path, optional
        Also write the result there.
    format : {"nbpipe", "kfp"}
        A package (zip; ``nbpipe run`` takes it) or Kubeflow Pipelines v2 YAML (UTF-8 bytes).
    pipeline : str, optional
        Which pipeline, when the notebook defines several (function name or ``name=``). With
        plain ``%%component`` cells and no name, the pipeline they make (as ``%nbpipe run``).
    python : str, optional
        Interpreter for the build (default: this one). Payloads load only on its Python minor version.
    content : dict, optional
        The notebook's JSON to export instead of the file's (``path`` still names its folder).
    image : str, optional
        KFP only: the step image the YAML references in place of nbpipe's ``nbpipe/base:pyX.Y``
        (default ``$NBPIPE_KFP_IMAGE``); components with their own ``base_image`` keep it.

    Returns
    -------
    bytes
        The package, or the YAML text encoded as UTF-8.

    Raises
    ------
    ExportError
        Naming the cell: no or several pipelines, a syntax error, a name nothing defines, an
        import that is not installed, a kept cell that fails.
    """
    if format not in FORMATS:
        raise ExportError(f"Unknown export format {format!r}", hint=f"Use one of: {', '.join(FORMATS)}.")
    program = plan_export(path, pipeline, content)
    data = build_program(program, Path(path).resolve().parent, format, python, image)
    if output is not None:
        Path(output).write_bytes(data)
    return data
