"""Load an endpoint bundle and call its predict function — only ever in the model-server process.

Like a step process, the model server is where user payloads are unpickled; the runner only
reads a bundle's JSON manifest. Non-goal: sandboxing the user's own code (it runs as the user).
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import traceback
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import sourcemap
from .bundle import read_manifest

_HERE = os.path.dirname(os.path.abspath(__file__))


def _unpickle(data: bytes, serializer: str) -> Any:
    if serializer == "dill":
        import dill

        return dill.loads(data)
    import cloudpickle

    return cloudpickle.loads(data)


class Loaded:
    """One loaded model version: the predict function, the model and how to call it."""

    def __init__(self, bundle: str, workdir: str):
        self.manifest = read_manifest(bundle)
        want, have = self.manifest.get("python", ""), "%d.%d" % sys.version_info[:2]
        if want and want != have:
            raise RuntimeError(f"the model was bundled on Python {want}, the model server runs Python {have} "
                               "(cloudpickle needs the same minor version)")
        with zipfile.ZipFile(bundle) as zf:
            self.predict: Callable[..., Any] = _unpickle(zf.read("predict.pkl"),
                                                         self.manifest["predict"]["serializer"])
            sourcemap.restore(self.predict)
            load = None
            if "load" in self.manifest:
                load = _unpickle(zf.read("load.pkl"), self.manifest["load"]["serializer"])
                sourcemap.restore(load)
            kind = self.manifest["model"]["kind"]
            self.model: Any = None
            if kind == "object":
                self.model = _unpickle(zf.read("model.pkl"), "cloudpickle")
            elif kind in ("file", "folder"):
                root = Path(workdir) / "model"
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir(parents=True)
                for info in zf.infolist():
                    if info.filename.startswith("model/") and not info.is_dir():
                        rel = Path(info.filename[len("model/"):])
                        if rel.is_absolute() or ".." in rel.parts:
                            raise RuntimeError(f"the bundle has an unsafe model path {info.filename!r}")
                        dest = root / rel
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(zf.read(info))
                path = root / self.manifest["model"]["name"] if kind == "file" else root
                self.model = str(path)
        if load is not None:
            self.model = load(self.model)
        self.has_model = kind != "none"
        try:
            params = list(inspect.signature(self.predict).parameters.values())
        except (TypeError, ValueError):
            params = []
        self.params = params[1:] if self.has_model else params

    def call(self, names: list[str], arrays: list[np.ndarray], parameters: dict[str, Any]) -> Any:
        """Call predict: ``predict(model, x)`` for one input, by name for several (or one dict)."""
        lead = [self.model] if self.has_model else []
        if len(arrays) == 1:
            return self.predict(*lead, arrays[0])
        by_name = {p.name for p in self.params}
        if set(names) <= by_name or any(p.kind == p.VAR_KEYWORD for p in self.params):
            return self.predict(*lead, **dict(zip(names, arrays)))
        return self.predict(*lead, dict(zip(names, arrays)))


def user_traceback(exc: BaseException) -> str:
    """The predict function's traceback without nbpipe's own frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    # The web framework's and thread pool's frames come first, then ours (server.py, loader.py);
    # the user's code starts after the last of ours.
    ours = [i for i, f in enumerate(frames) if os.path.dirname(os.path.abspath(f.filename)) == _HERE]
    if ours:
        frames = frames[ours[-1] + 1:]
    lines = (["Traceback (most recent call last):\n"] + traceback.format_list(frames)) if frames else []
    return "".join(lines + traceback.format_exception_only(type(exc), exc))
