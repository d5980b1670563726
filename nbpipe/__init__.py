"""nbpipe: turn notebook work into reproducible pipelines.

Define components with :func:`component`, compose them with :func:`pipeline`, and run with
:func:`run` (on an embedded local runner unless one is configured). Heavy pieces (the HTTP
client, widgets, magics) load lazily so ``import nbpipe`` stays fast.
"""

from __future__ import annotations

from typing import Any

from .artifacts import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output
from .component import Component, Resources, component
from .control import RUN_ID, RUN_NAME, RUN_STATUS, Collected, Condition, Elif, Else, ExitHandler, If, ParallelFor
from .errors import NbpipeError
from .package import build_package, read_package
from .pipeline import Pipeline, pipeline

__version__ = "0.1.0"

__all__ = [
    "Artifact", "ClassificationMetrics", "Client", "Collected", "Component", "Condition", "Dataset", "Elif",
    "Else", "ExitHandler", "HTML", "If", "Input", "Markdown", "Metrics", "Model", "NbpipeError", "Output",
    "ParallelFor", "Pipeline", "RUN_ID", "RUN_NAME", "RUN_STATUS", "Resources", "Run", "attach",
    "build_package", "compare", "component", "debug", "loguniform", "pipeline", "read_package", "run", "serve", "sweep", "uniform",
]

_LAZY = {"Client": "client", "Run": "client", "run": "client", "attach": "client", "compare": "comparison",
         "debug": "debugging", "serve": "serving",
         "sweep": "sweeps", "uniform": "sweeps", "loguniform": "sweeps"}


# Submodules reachable as attributes after a bare ``import nbpipe`` (``nbpipe.client.configure``),
# imported on first touch so the import itself stays light.
_SUBMODULES = frozenset({"client", "comparison", "sweeps", "events", "export", "widgets", "serializers", "artifacts",
                         "serving"})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # the import system sets the attribute
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'nbpipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives (for ``jupyter labextension develop``)."""
    return [{"src": "labextension", "dest": "nbpipe"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbpipe``: register the nbpipe magics."""
    from kernel_magics import load_ipython_extension as _load

    from .client import prestart

    _load(ipython)
    prestart()
