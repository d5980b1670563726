"""An endpoint *bundle*: one model version as a single file the model server loads.

A zip holding ``manifest.json`` (plain JSON the runner may read: format, python, what the model
is) plus the pickled parts only the model-server process unpickles: ``predict.pkl`` (the predict
function, captured by value like a component's function, with the notebook globals and helpers it
uses now), optionally ``load.pkl``, and the model — ``model.pkl`` for an in-memory object, or the
files of a model path under ``model/``. Deterministic bytes for the same content (fixed zip
timestamps), so re-deploying an unchanged model is recognised by digest.

Non-goals: loading (see :mod:`.loader`), long-term storage (same Python minor version to load).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import cloudpickle

from ..capture import by_value_modules, pickle_function
from ..errors import DefinitionError

FORMAT = "nbpipe-endpoint/1"
DEPLOY_ENV = "NBPIPE_DEPLOY_ENDPOINT"  # marks a deploy component (its value: the endpoint name)
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_BUNDLE_BYTES = 2 * 1024**3
_EPOCH = (1980, 1, 1, 0, 0, 0)


def check_endpoint_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DefinitionError(f"Endpoint name {name!r} is not valid",
                              hint="Use lowercase letters, digits and '-' (a DNS label, up to 63 characters), e.g. 'iris'.")
    return name


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    zf.writestr(info, data)


def _model_path_files(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [(p.relative_to(path).as_posix(), p) for p in files]


def bundle_resources(resources: Any) -> dict[str, Any]:
    """What a model server asks for (``cpu``, ``memory``, ``gpu``, as a step's ``resources=``), as
    plain JSON for the manifest; ``{}`` for none. Raises :class:`DefinitionError` when malformed (the
    runner checks a manifest's with this too: it ends up in a pod spec)."""
    from ..component import Resources

    if resources is None or resources == {}:
        return {}
    if isinstance(resources, dict):
        unknown = sorted(set(resources) - {"cpu", "memory", "gpu"})
        if unknown:
            raise DefinitionError(f"Unknown endpoint resources {', '.join(map(repr, unknown))}",
                                  hint="Use cpu= (e.g. '500m'), memory= (e.g. '2Gi') and gpu= (a count).")
        resources = Resources(**resources)
    if not isinstance(resources, Resources):
        raise DefinitionError(f"resources= must be a dict or nbpipe.Resources, not {type(resources).__name__}")
    out: dict[str, Any] = {k: v for k, v in (("cpu", resources.cpu), ("memory", resources.memory)) if v is not None}
    if resources.gpu:
        out["gpu"] = resources.gpu
    return out


def make_bundle(model: Any, predict: Callable[..., Any], load: Callable[..., Any] | None = None,
                name: str = "endpoint", resources: Any = None) -> bytes:
    """The bundle bytes for ``predict`` over ``model`` (an object, a file/folder path, or None).

    ``resources``: what the model server's pod asks for on Kubernetes (``{"cpu": "1", "memory":
    "2Gi", "gpu": 1}``), instead of the runner's step defaults; a local runner's server ignores it.
    """
    check_endpoint_name(name)
    wanted = bundle_resources(resources)
    if not callable(predict):
        raise DefinitionError(f"Endpoint {name!r}: predict must be a function, got {type(predict).__name__}",
                              hint="Pass predict=fn where fn(model, inputs) returns the predictions.")
    if load is not None and not callable(load):
        raise DefinitionError(f"Endpoint {name!r}: load must be a function, got {type(load).__name__}")
    pred_payload, pred_ser = pickle_function(predict, f"{name}.predict")
    manifest: dict[str, Any] = {
        "format": FORMAT, "python": "%d.%d" % sys.version_info[:2], "cloudpickle": cloudpickle.__version__,
        "predict": {"name": getattr(predict, "__name__", "predict"), "serializer": pred_ser},
    }
    if wanted:
        manifest["resources"] = wanted
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _add(zf, "predict.pkl", pred_payload)
        if load is not None:
            load_payload, load_ser = pickle_function(load, f"{name}.load")
            _add(zf, "load.pkl", load_payload)
            manifest["load"] = {"name": getattr(load, "__name__", "load"), "serializer": load_ser}
        if model is None:
            manifest["model"] = {"kind": "none"}
        elif isinstance(model, (str, os.PathLike)) or hasattr(model, "path") and isinstance(getattr(model, "path"), str):
            path = Path(getattr(model, "path", model)).expanduser()
            if not path.exists():
                raise DefinitionError(f"Endpoint {name!r}: the model path {str(path)!r} does not exist",
                                      hint="Pass the model object itself, or the path of a saved model file or folder.")
            files = _model_path_files(path)
            for rel, p in files:
                _add(zf, f"model/{rel}", p.read_bytes())
            manifest["model"] = {"kind": "file" if path.is_file() else "folder", "name": path.name,
                                 "files": len(files)}
        else:
            mods = by_value_modules(type(model))  # a class from the notebook or a local script: by value
            for m in mods:
                cloudpickle.register_pickle_by_value(m)
            try:
                data = cloudpickle.dumps(model, protocol=4)
            except Exception as exc:  # noqa: BLE001
                raise DefinitionError(f"Endpoint {name!r}: the model ({type(model).__name__}) cannot be pickled",
                                      str(exc), "Save it to a file and pass the path (with load=...) instead.") from None
            finally:
                for m in mods:
                    cloudpickle.unregister_pickle_by_value(m)
            _add(zf, "model.pkl", data)
            manifest["model"] = {"kind": "object", "type": f"{type(model).__module__}.{type(model).__qualname__}"}
        _add(zf, "manifest.json", json.dumps(manifest, sort_keys=True).encode())
    data = buf.getvalue()
    if len(data) > MAX_BUNDLE_BYTES:
        raise DefinitionError(f"Endpoint {name!r}: the model bundle is {len(data) / 1e9:.1f} GB, over the 2 GB limit")
    return data


def read_manifest(data_or_path: bytes | str | Path) -> dict[str, Any]:
    """The manifest of a bundle, without unpickling anything (safe for the runner); ValueError if not one."""
    try:
        src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else str(data_or_path)
        with zipfile.ZipFile(src) as zf:
            info = zf.getinfo("manifest.json")
            if info.file_size > 1 << 20:
                raise ValueError("its manifest is over 1 MB")
            manifest = json.loads(zf.read(info))
            names = set(zf.namelist())
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an nbpipe endpoint bundle ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"not an nbpipe endpoint bundle (format {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                         f"expected {FORMAT!r})")
    if "predict.pkl" not in names:
        raise ValueError("the bundle has no predict function")
    return manifest
