"""Typed serializers for step outputs, and the small previews the run graph shows.

A return value is written in the best well-kept format for its type — JSON for plain
values, ``.npy`` for numpy arrays, Parquet for pandas DataFrames (CSV if pyarrow is missing),
cloudpickle otherwise — and the format is recorded so the client (or another step) loads it
back. Previews are tiny JSON descriptions (a table head, a metrics dict, an image digest).

This module runs inside step processes and the user's kernel; the runner never calls
:func:`load_value` (it never unpickles). Heavy libraries are imported only when a value of
their type shows up. Non-goal: cross-version long-term storage of pickles.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import sys
from typing import Any, Callable

MAX_JSON_INLINE = 64 * 1024  # JSON outputs up to this size are also kept in the runner's metadata
MAX_PREVIEW_ITEMS = 50
MAX_TEXT = 4000


def _is_plain_json(value: Any, depth: int = 0) -> bool:
    """True if JSON round-trips ``value`` exactly (no tuples, no NaN, str keys)."""
    if depth > 50:
        return False
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return type(value) is int
    if isinstance(value, float):
        return type(value) is float and math.isfinite(value)
    if type(value) is list:
        return all(_is_plain_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain_json(v, depth + 1) for k, v in value.items())
    return False


def dump_value(value: Any) -> tuple[bytes, str]:
    """Serialize a Python value; return (bytes, format)."""
    if _is_plain_json(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode(), "json"
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray) and value.dtype != object:
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return buf.getvalue(), "npy"
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        try:
            import pyarrow  # noqa: F401

            buf = io.BytesIO()
            value.to_parquet(buf)
            return buf.getvalue(), "parquet"
        except Exception:  # noqa: BLE001 - unsupported column types: fall back to pickle
            pass
    import cloudpickle

    return cloudpickle.dumps(value, protocol=4), "pickle"


def load_value(data: bytes, fmt: str) -> Any:
    """Inverse of :func:`dump_value`. Unpickles for ``pickle``: call only in user processes."""
    if fmt == "json":
        return json.loads(data)
    if fmt == "npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "parquet":
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data))
    if fmt == "csv":
        import pandas as pd

        return pd.read_csv(io.BytesIO(data))
    if fmt == "pickle":
        import cloudpickle

        return cloudpickle.loads(data)
    raise ValueError(f"Unknown nbpipe value format {fmt!r}")


# ---------------------------------------------------------------- previews


def _truncate_json(value: Any, depth: int = 0) -> Any:
    if depth > 4:
        return "…"
    if isinstance(value, list):
        out = [_truncate_json(v, depth + 1) for v in value[:MAX_PREVIEW_ITEMS]]
        return out + ([f"… {len(value) - MAX_PREVIEW_ITEMS} more"] if len(value) > MAX_PREVIEW_ITEMS else [])
    if isinstance(value, dict):
        items = list(value.items())[:MAX_PREVIEW_ITEMS]
        return {str(k): _truncate_json(v, depth + 1) for k, v in items}
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "…"
    return value


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    try:
        f = float(v)
        return f if math.isfinite(f) else str(v)
    except (TypeError, ValueError):
        return str(v)[:200]


def table_preview(df: Any) -> dict[str, Any]:
    head = df.head(10)
    return {
        "type": "table",
        "columns": [str(c) for c in head.columns],
        "rows": [[_cell(v) for v in row] for row in head.itertuples(index=False, name=None)],
        "shape": [int(df.shape[0]), int(df.shape[1])],
    }


def preview_value(value: Any, save_image: Callable[[bytes, str], str] | None = None) -> dict[str, Any]:
    """A small JSON preview of a Python value. ``save_image(png_bytes, mime) -> digest``."""
    if _is_plain_json(value):
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     for v in value.values()):
            return {"type": "metrics", "metrics": _truncate_json(value)}
        return {"type": "json", "value": _truncate_json(value)}
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        small = value.size <= MAX_PREVIEW_ITEMS and value.dtype != object
        return {"type": "array", "shape": list(value.shape), "dtype": str(value.dtype),
                "values": _truncate_json(value.tolist()) if small else None}
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        return table_preview(value)
    if pd is not None and isinstance(value, pd.Series):
        return table_preview(value.to_frame())
    fig = _as_figure(value)
    if fig is not None and save_image is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        return {"type": "image", "mime": "image/png", "digest": save_image(buf.getvalue(), "image/png")}
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(value, pil.Image) and save_image is not None:
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return {"type": "image", "mime": "image/png", "digest": save_image(buf.getvalue(), "image/png")}
    text = repr(value)
    return {"type": "text", "text": text[:MAX_TEXT] + ("…" if len(text) > MAX_TEXT else ""),
            "class": f"{type(value).__module__}.{type(value).__qualname__}"}


def _as_figure(value: Any) -> Any:
    fig_mod = sys.modules.get("matplotlib.figure")
    if fig_mod is None:
        return None
    if isinstance(value, fig_mod.Figure):
        return value
    get = getattr(value, "get_figure", None)
    if callable(get):
        try:
            f = get()
        except Exception:  # noqa: BLE001
            return None
        return f if isinstance(f, fig_mod.Figure) else None
    return None


def preview_artifact(artifact_type: str, path: str, metadata: dict[str, Any], size: int,
                     save_image: Callable[[bytes, str], str] | None = None) -> dict[str, Any] | None:
    """Preview a path-style artifact from its type, metadata and (small) file contents."""
    items: list[dict[str, Any]] = []
    scalars = {k: v for k, v in metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if artifact_type in ("Metrics", "ClassificationMetrics") and scalars:
        items.append({"type": "metrics", "metrics": scalars})
    cm = metadata.get("confusionMatrix")
    if isinstance(cm, dict):
        items.append({"type": "confusion_matrix", "categories": cm.get("categories", []),
                      "matrix": cm.get("matrix", [])})
    roc = metadata.get("confidenceMetrics")
    if isinstance(roc, list):
        step = max(1, len(roc) // 200)
        items.append({"type": "roc", "points": [
            {"fpr": p.get("falsePositiveRate"), "tpr": p.get("recall"), "threshold": p.get("confidenceThreshold")}
            for p in roc[::step]]})
    lower = path.lower()
    try:
        if artifact_type == "HTML" and size <= 512 * 1024:
            items.append({"type": "html", "html": open(path, encoding="utf-8", errors="replace").read()})
        elif artifact_type == "Markdown" and size <= 512 * 1024:
            items.append({"type": "markdown", "text": open(path, encoding="utf-8", errors="replace").read()})
        elif lower.endswith((".png", ".jpg", ".jpeg", ".gif", ".svg")) and save_image is not None and size < 8 << 20:
            mime = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
                    "svg": "image/svg+xml"}[lower.rsplit(".", 1)[1]]
            with open(path, "rb") as fh:
                items.append({"type": "image", "mime": mime, "digest": save_image(fh.read(), mime)})
        elif lower.endswith(".csv") and size <= 64 << 20:
            items.append(_csv_preview(path))
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    if not items:
        text = _text_head(path) if path and size else None
        # a file of unknown kind shows its first bytes when they are text, as KFP does; binary stays a size
        return {"type": "multi", "items": [{"type": "file", "size": size}, text]} if text else {"type": "file", "size": size}
    return items[0] if len(items) == 1 else {"type": "multi", "items": items}


TEXT_HEAD = 2048  # bytes of a file of unknown kind shown as text


def _text_head(path: str) -> dict[str, Any] | None:
    """The first ``TEXT_HEAD`` bytes of ``path`` as a text preview (a whole small JSON file pretty-printed),
    or None for a binary file (a NUL byte, or not UTF-8)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(TEXT_HEAD + 1)
    except OSError:
        return None
    whole = len(head) <= TEXT_HEAD
    if b"\0" in head:
        return None
    try:  # a character cut at the limit is left out, not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head[:TEXT_HEAD], final=whole)
    except UnicodeDecodeError:
        return None
    if not whole:
        return {"type": "text", "text": text + "…"}
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    return {"type": "text", "text": text}


def _csv_preview(path: str) -> dict[str, Any]:
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        rows = [row for _, row in zip(range(10), reader)]
        n = len(rows) + sum(1 for _ in reader)
    return {"type": "table", "columns": header, "rows": [[_cell(v) for v in r] for r in rows],
            "shape": [n, len(header)]}


def preview_size_ok(preview: dict[str, Any] | None, limit: int = 256 * 1024) -> dict[str, Any] | None:
    """Drop previews too large for the metadata database and event stream."""
    if preview is None:
        return None
    if len(json.dumps(preview, default=str)) > limit:
        return {"type": "text", "text": "(preview too large to show)"}
    return preview
