"""Runs inside a Kubeflow Pipelines container: unpickle an nbpipe component and call it.

:mod:`nbpipe.export.kfp` embeds this file's source, unchanged, in every executor's program,
next to a generated KFP-typed wrapper function that KFP's own executor
(``kfp.dsl.executor_main``) calls. KFP reads the executor input, hands the wrapper typed
parameters and artifacts with local ``.path``\\ s, and writes ``executor_output.json``; this code
only turns KFP artifacts into nbpipe ones (and their metadata back), unpickles values that
travel as pickled ``system.Artifact`` files (one or, for ``Collected``, a list), pickles
Python-object return values the same way, and turns KFP's ``PipelineTaskFinalStatus`` into
nbpipe's ``RUN_STATUS`` dict.

Non-goals: importing the rest of nbpipe (only ``nbpipe.artifacts``, and only for artifact
arguments), installing packages (the executor command does that).
"""

from __future__ import annotations

import base64
import os
from typing import Any


def _nbpipe_artifact(kind: str, kfp_artifact: Any) -> Any:
    from nbpipe.artifacts import ARTIFACT_TYPES

    return ARTIFACT_TYPES[kind](name=kfp_artifact.name, path=kfp_artifact.path, uri=kfp_artifact.uri,
                                metadata=dict(kfp_artifact.metadata or {}))


def _kfp_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """nbpipe's confusion matrix shape → Kubeflow's (``annotationSpecs`` + ``rows``)."""
    out = dict(metadata)
    cm = out.get("confusionMatrix")
    if isinstance(cm, dict) and "categories" in cm:
        out["confusionMatrix"] = {"annotationSpecs": [{"displayName": c} for c in cm["categories"]],
                                  "rows": [{"row": list(r)} for r in cm["matrix"]]}
    return out


def _run_status(status: Any) -> dict[str, Any]:
    """KFP's ``PipelineTaskFinalStatus`` in the shape of nbpipe's ``RUN_STATUS``.

    KFP reports the exit handler group's outcome, not each step's, so ``failed_steps`` and
    ``steps`` stay empty; ``error`` carries KFP's code and message.
    """
    state = str(status.state or "").lower()
    return {"state": state, "run_id": status.pipeline_job_resource_name, "run_name": status.pipeline_job_resource_name,
            "failed_steps": [], "cancelled": state == "cancelled", "steps": {},
            "error": {"code": status.error_code, "message": status.error_message},
            "task": status.pipeline_task_name}


def _load_pickle(path: str) -> Any:
    import cloudpickle

    with open(path, "rb") as fh:
        return cloudpickle.load(fh)


def _save_pickle(path: str, value: Any) -> None:
    import cloudpickle

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as fh:
        cloudpickle.dump(value, fh, protocol=4)


def _restore_sources(func: Any) -> None:
    """Step tracebacks with the user's cells and lines (as :func:`nbpipe.sourcemap.restore`).

    The payload's function carries ``__nbpipe_sources__``: a label per code object (``Cell In[7]``,
    a ``.py`` path) and the lines of each. Code objects get their label as file name and the lines
    go into :mod:`linecache`. Kept here, self-contained, because nbpipe is not installed in KFP pods.
    """
    import linecache
    import types
    import zlib

    info = getattr(func, "__nbpipe_sources__", None)
    if not isinstance(info, dict):
        return
    for label, numbered in info.get("files", {}).items():
        lines = ["\n"] * max((n for n, _ in numbered), default=0)
        for n, text in numbered:
            lines[n - 1] = text if text.endswith("\n") else text + "\n"
        linecache.cache[label] = (sum(map(len, lines)), None, lines, label)
    codes = info.get("code", {})

    def relabel(code: types.CodeType, label: str) -> types.CodeType:
        consts = tuple(relabel(c, label) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        return code.replace(co_filename=label, co_consts=consts)

    seen: set[int] = set()
    todo: list[Any] = [func]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not isinstance(obj, types.FunctionType):
            continue
        seen.add(id(obj))
        code = obj.__code__
        label = codes.get(f"{code.co_qualname}@{code.co_firstlineno}#{zlib.crc32(code.co_code):08x}")
        if label is None:
            continue
        obj.__code__ = relabel(code, label)
        for value in obj.__globals__.values():
            inner = getattr(value, "func", None) if type(value).__name__ == "Component" else None
            todo.append(inner if inner is not None else value)
        for cell in obj.__closure__ or ():
            try:
                todo.append(cell.cell_contents)
            except ValueError:
                pass


def _nbpipe_call(step: dict[str, Any], payload: str, kwargs: dict[str, Any]) -> Any:
    """Call the pickled component with KFP's ``kwargs``; return the parameter outputs as a tuple."""
    if step["serializer"] == "dill":
        import dill as loader
    else:
        import cloudpickle as loader
    func = loader.loads(base64.b64decode(payload))
    _restore_sources(func)
    args: dict[str, Any] = {}
    written: list[tuple[Any, Any]] = []
    for name, how in step["inputs"].items():
        if name not in kwargs:
            continue
        value = kwargs[name]
        if how == "pickle":
            value = _load_pickle(value.path)
        elif how == "status":
            value = _run_status(value)
        elif how.startswith("list:"):
            inner = how[5:]
            value = [_load_pickle(v.path) if inner == "pickle" else _nbpipe_artifact(inner.split(":", 1)[1], v)
                     for v in value]
        elif how.startswith("artifact:"):
            value = _nbpipe_artifact(how.split(":", 1)[1], value)
        elif how == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        args[name] = value
    for name, kind in step["artifacts_out"].items():
        art = _nbpipe_artifact(kind, kwargs[name])
        written.append((kwargs[name], art))
        args[name] = art
    result = func(**args)
    for kfp_artifact, art in written:
        kfp_artifact.metadata.update(_kfp_metadata(art.metadata))
    names = [name for name, _ in step["returns"]]
    if step["return_style"] == "none":
        values: dict[str, Any] = {}
    elif step["return_style"] == "namedtuple":
        values = dict(zip(names, result))
    else:
        values = {names[0]: result}
    params = []
    for name, how in step["returns"]:
        if how == "pickle":
            _save_pickle(kwargs[name].path, values[name])
        else:
            params.append(values[name])
    return tuple(params) if params else None
