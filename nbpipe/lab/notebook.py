"""``/nbpipe/api/notebook/...``: analyze, export and run the notebook open in JupyterLab.

**analyze** reads the notebook as the editor holds it (the panel sends its JSON, outputs left
out), so the panel never has to save a notebook to look at it. **run** and **export** read the
saved ``.ipynb`` from the server's root directory (the panel saves first only when the user
clicked and the notebook has unsaved changes, and says so). Both hand the notebook to
:mod:`nbpipe.export`, which builds the package in a fresh process from the cells that define
the pipeline. A short cache keyed by the planned program (the kept code, not the file's mtime)
lets **Run** reuse the package **analyze** just built, saved or not.

A notebook without a pipeline is a normal answer (``pipeline: null`` and the reason), not an
HTTP error. Non-goals: exporting kernel state; choosing what a notebook's pipeline is (export does).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import tornado.web

from ..errors import NbpipeError
from ..widgets.snapshot import mark_floats
from .base import NbpipeHandler

_CACHE_SIZE = 8


class PackageCache:
    """The last few exported packages, keyed by the notebook's folder and the planned program."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def export(self, path: Path, pipeline: str | None, content: dict[str, Any] | None = None) -> bytes:
        """The package of ``path`` (or of its unsaved ``content``), built when not cached."""
        from ..export import build_program, plan_export

        program = plan_export(path, pipeline, content)
        digest = hashlib.sha256(json.dumps([program.to_json(), sys.executable], sort_keys=True).encode()).hexdigest()
        key = (str(path.parent), digest)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = build_program(program, path.parent)
        with self._lock:
            self._items[key] = data
            while len(self._items) > _CACHE_SIZE:
                self._items.popitem(last=False)
        return data


_PACKAGES = PackageCache()


def notebook_package(path: str | os.PathLike[str], pipeline: str | None = None,
                     content: dict[str, Any] | None = None) -> bytes:
    """The package of the notebook at ``path`` as saved (or of ``content``), exported in a fresh
    process like the panel's Run does; cached by the kept code. Raises ExportError naming the cell."""
    return _PACKAGES.export(Path(path).resolve(), pipeline, content)


def summarize(path: Path, pipeline: str | None, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the panel shows for a notebook: its pipelines, the chosen one's parameters, steps, components.

    A notebook that defines no pipeline gets ``pipeline: None`` and ``reason`` (message, hint).
    """
    from ..export.describe import package_summary
    from ..export.notebook import NO_PIPELINE_DETAIL, NO_PIPELINE_HINT, pipelines_of, read_notebook

    nb = read_notebook(path, content)
    found = pipelines_of(nb)
    names = [c.title for c in found]
    if pipeline is None and len(found) > 1 and not any(c.kind == "cells" for c in found):
        # Export wants a name here; the panel shows the first and lets the user pick another.
        pipeline = names[0]
    if not names:
        return {"path": path.name, "pipelines": [], "pipeline": None, "digest": None, "parameters": [], "steps": [],
                "components": [], "python": [],
                "reason": {"message": f"No pipeline in {path.name} yet", "detail": NO_PIPELINE_DETAIL,
                           "hint": NO_PIPELINE_HINT}}
    summary = package_summary(_PACKAGES.export(path, pipeline, content))
    components = [
        {
            "name": key,
            "inputs": c["inputs"],
            "outputs": c["outputs"],
            "image": c["image"],
            "retries": c["retries"],
            "cache": c["cache"],
        }
        for key, c in summary["components"].items()
    ]
    # In the order the steps use them (cell order for plain cells), not alphabetical.
    first = {}
    for i, step in enumerate(summary["steps"]):
        first.setdefault(step["component"], i)
    components.sort(key=lambda c: first.get(c["name"], len(first)))
    return {
        "path": path.name,
        "pipelines": names,
        "pipeline": summary["name"],
        "digest": summary["digest"],
        "parameters": summary["parameters"],
        "steps": summary["steps"],
        "components": components,
        "python": summary["python"],
        "reason": None,
    }


class NotebookHandler(NbpipeHandler):
    """Resolves the ``path`` of the request body to a saved notebook under the server root."""

    def notebook_path(self, body: dict[str, Any], allow_unsaved: bool = False) -> Path:
        rel = body.get("path")
        if not isinstance(rel, str) or not rel.endswith(".ipynb"):
            raise NbpipeError("Give the notebook's path (a .ipynb file relative to the Jupyter root)")
        root = Path(os.path.realpath(self.contents_manager.root_dir))
        path = Path(os.path.realpath(root / rel.lstrip("/")))
        if root != path and root not in path.parents:
            raise NbpipeError(f"{rel} is outside the Jupyter root directory")
        if not path.is_file() and not (allow_unsaved and isinstance(body.get("content"), dict)):
            raise NbpipeError(f"No notebook {rel}", hint="Save the notebook first.")
        return path

    @staticmethod
    def content(body: dict[str, Any]) -> dict[str, Any] | None:
        content = body.get("content")
        if content is not None and not (isinstance(content, dict) and isinstance(content.get("cells"), list)):
            raise NbpipeError("content must be the notebook's JSON (an object with cells)")
        return content

    @staticmethod
    def pipeline_name(body: dict[str, Any]) -> str | None:
        name = body.get("pipeline") or None
        if name is not None and not isinstance(name, str):
            raise NbpipeError("pipeline must be a pipeline name")
        return name


class AnalyzeHandler(NotebookHandler):
    """``POST /notebook/analyze`` ``{path, pipeline?, content?}``: pipelines, parameters, steps,
    components — of ``content`` (the editor's notebook JSON) when given, else of the saved file."""

    @tornado.web.authenticated
    async def post(self) -> None:
        try:
            body = self.json_body()
            path = self.notebook_path(body, allow_unsaved=True)
            result = await self.blocking(summarize, path, self.pipeline_name(body), self.content(body))
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.finish(result)


class ExportHandler(NotebookHandler):
    """``POST /notebook/export`` ``{path, format, pipeline?, image?}``: write the package (or KFP
    YAML) beside it. KFP answers also say which images the YAML references and how to build and
    push them (``images``, ``image``, ``note``); ``image`` replaces nbpipe's default step image."""

    @tornado.web.authenticated
    async def post(self) -> None:
        from ..export import export_notebook
        from ..export.kfp_image import check_image, image_note, kfp_export
        from ..package import SUFFIX

        extra: dict[str, Any] = {}
        try:
            body = self.json_body()
            path = self.notebook_path(body)
            fmt = body.get("format", "nbpipe")
            if fmt not in ("nbpipe", "kfp"):
                raise NbpipeError(f"Unknown export format {fmt!r}", hint="Use 'nbpipe' or 'kfp'.")
            image = body.get("image") or None
            if image is not None and not isinstance(image, str):
                raise NbpipeError("image must be a container image reference (a string)")
            check_image(image)
            out = path.with_suffix(SUFFIX if fmt == "nbpipe" else ".kfp.yaml")
            pipeline = self.pipeline_name(body)
            if fmt == "nbpipe":
                data = await self.blocking(lambda: export_notebook(path, out, format=fmt, pipeline=pipeline))
            else:
                package = await self.blocking(_PACKAGES.export, path, pipeline)
                data, images, chosen = await self.blocking(kfp_export, package, image)
                out.write_bytes(data)
                extra = {"images": images, "image": chosen,
                         "note": image_note(images, chosen, "enter {image} as the KFP image below and Export KFP again.",
                                           command=False)}
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        root = Path(os.path.realpath(self.contents_manager.root_dir))
        self.finish({"path": out.relative_to(root).as_posix(), "format": fmt, "size": len(data), **extra})


class RunNotebookHandler(NotebookHandler):
    """``POST /notebook/run`` ``{path, params, pipeline?, experiment?}``: export, submit, snapshot."""

    @tornado.web.authenticated
    async def post(self) -> None:
        try:
            body = self.json_body()
            path = self.notebook_path(body)
            params = body.get("params") or {}
            if not isinstance(params, dict):
                raise NbpipeError("params must be a JSON object of parameter values")
            experiment = body.get("experiment") or "Default"
            if not isinstance(experiment, str):
                raise NbpipeError("experiment must be a string")
            pipeline = self.pipeline_name(body)
            data = await self.blocking(_PACKAGES.export, path, pipeline)
            client = await self.blocking(self.connection.client)
            rel = body["path"].lstrip("/")
            run = await self.blocking(
                lambda: client.submit(data, params, experiment=experiment, labels={"notebook": rel})
            )
            snapshot = run.last_snapshot  # submit/rerun already returned it
            if snapshot.get("state") in ("succeeded", "failed", "cancelled"):  # every step from the cache
                from .routes import name_cache_origins

                snapshot = await self.blocking(name_cache_origins, client, snapshot)
        except NbpipeError as exc:
            self.send_nbpipe_error(exc)
            return
        self.set_status(201)
        self.finish(mark_floats(snapshot))  # a float typed as 3 shows c = 3.0 in the new run's graph, not c = 3


def notebook_handlers() -> list[tuple[str, type[NbpipeHandler]]]:
    return [
        ("notebook/analyze", AnalyzeHandler),
        ("notebook/export", ExportHandler),
        ("notebook/run", RunNotebookHandler),
    ]
