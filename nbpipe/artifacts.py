"""Path-style artifact types, as Kubeflow Pipelines users know them.

A component declares ``data: Input[Dataset]`` or ``model: Output[Model]``; at run time it
gets an :class:`Artifact` whose ``path`` is a local file (or folder) to read or write, plus a
``metadata`` dict. :class:`Metrics` and :class:`ClassificationMetrics` also record values
the run graph can show (a metrics table, a confusion matrix, an ROC curve).

Non-goal: remote I/O. Moving artifacts between steps and stores is the entrypoint's job.
"""

from __future__ import annotations

import json
import os
import typing
from typing import Any, Annotated


class Artifact:
    """A stored file or folder. ``path`` is where the step reads or writes it."""

    schema_title = "system.Artifact"

    def __init__(self, name: str = "", path: str = "", uri: str = "", metadata: dict[str, Any] | None = None):
        self.name = name
        self.path = path
        self.uri = uri
        self.metadata: dict[str, Any] = dict(metadata or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, path={self.path!r})"


class Dataset(Artifact):
    schema_title = "system.Dataset"


class Model(Artifact):
    schema_title = "system.Model"


class HTML(Artifact):
    """An HTML file the run graph renders (sandboxed)."""

    schema_title = "system.HTML"


class Markdown(Artifact):
    """A Markdown file the run graph renders."""

    schema_title = "system.Markdown"


class Metrics(Artifact):
    """Scalar metrics; ``log_metric`` also writes them as JSON to ``path``."""

    schema_title = "system.Metrics"

    def log_metric(self, metric: str, value: float) -> None:
        self.metadata[metric] = value
        self._save()

    def _save(self) -> None:
        if self.path:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as fh:
                json.dump(self.metadata, fh, sort_keys=True, default=float)


class ClassificationMetrics(Metrics):
    """A confusion matrix and/or an ROC curve, in Kubeflow's shape."""

    schema_title = "system.ClassificationMetrics"

    def log_confusion_matrix(self, categories: list[Any], matrix: list[list[int]]) -> None:
        rows = [[int(v) for v in row] for row in matrix]
        if len(rows) != len(categories) or any(len(r) != len(categories) for r in rows):
            raise ValueError(
                f"Confusion matrix must be {len(categories)}x{len(categories)} for {len(categories)} categories."
            )
        self.metadata["confusionMatrix"] = {"categories": [str(c) for c in categories], "matrix": rows}
        self._save()

    def log_roc_curve(self, fpr: list[float], tpr: list[float], threshold: list[float]) -> None:
        if not (len(fpr) == len(tpr) == len(threshold)):
            raise ValueError("fpr, tpr and threshold must have the same length.")
        self.metadata["confidenceMetrics"] = [
            {"falsePositiveRate": float(f), "recall": float(t), "confidenceThreshold": float(c)}
            for f, t, c in zip(fpr, tpr, threshold)
        ]
        self._save()


ARTIFACT_TYPES: dict[str, type[Artifact]] = {
    cls.__name__: cls for cls in (Artifact, Dataset, Model, Metrics, ClassificationMetrics, HTML, Markdown)
}


class _Direction:
    def __init__(self, direction: str) -> None:
        self.direction = direction

    def __repr__(self) -> str:
        return f"<nbpipe {self.direction}>"


INPUT = _Direction("input")
OUTPUT = _Direction("output")


class Input:
    """``Input[Dataset]``: an artifact this component reads."""

    def __class_getitem__(cls, artifact_type: type[Artifact]) -> Any:
        return Annotated[artifact_type, INPUT]


class Output:
    """``Output[Model]``: an artifact this component writes to ``.path``."""

    def __class_getitem__(cls, artifact_type: type[Artifact]) -> Any:
        return Annotated[artifact_type, OUTPUT]


def artifact_annotation(annotation: Any) -> tuple[str, type[Artifact]] | None:
    """Return ``("input"|"output", ArtifactType)`` for an Input/Output annotation, else None."""
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        for marker in extra:
            if isinstance(marker, _Direction) and isinstance(base, type) and issubclass(base, Artifact):
                return marker.direction, base
    if isinstance(annotation, type) and issubclass(annotation, Artifact):
        return "input", annotation
    return None
