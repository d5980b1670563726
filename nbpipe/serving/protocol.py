"""KServe's open inference protocol (v2), the request/response half: JSON tensors <-> numpy.

``{"inputs": [{"name", "shape", "datatype", "data"}], "parameters"?, "id"?, "outputs"?}`` in,
``{"model_name", "model_version", "id"?, "outputs": [{"name", "shape", "datatype", "data"}]}`` out.
Every malformed request raises :class:`BadRequest` with a message that says what is wrong and
what was expected (the server answers 400 with it). Non-goal: the binary tensor extension.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DATATYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}
_FROM_KIND = {"b": "BOOL", "U": "BYTES", "S": "BYTES", "O": "BYTES"}
MAX_ELEMENTS = 50_000_000


class BadRequest(ValueError):
    """A request that does not follow the protocol (HTTP 400)."""


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for d in data:
            out.extend(_flatten(d)) if isinstance(d, list) else out.append(d)
        return out
    return [data]


def parse_inputs(body: Any) -> tuple[list[str], list[np.ndarray], dict[str, Any]]:
    """Names and arrays of a v2 infer request's ``inputs`` (in order), and the request's ``parameters``."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object like "
                         '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [...]}]}')
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("The request needs a non-empty 'inputs' list of tensors "
                         "({name, shape, datatype, data})")
    names: list[str] = []
    arrays: list[np.ndarray] = []
    for i, t in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(t, dict):
            raise BadRequest(f"{where} must be an object with name, shape, datatype and data")
        missing = [k for k in ("name", "shape", "datatype", "data") if k not in t]
        if missing:
            raise BadRequest(f"{where} has no {', '.join(missing)} (a tensor needs name, shape, datatype and data)")
        name, shape, dtype = t["name"], t["shape"], t["datatype"]
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{where}.name must be a non-empty string")
        where = f"input {name!r}"
        if name in names:
            raise BadRequest(f"{where} appears twice")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise BadRequest(f"{where}: shape must be a list of whole numbers >= 0, got {shape!r}")
        if dtype not in DATATYPES:
            raise BadRequest(f"{where}: datatype {dtype!r} is not one of {', '.join(DATATYPES)}")
        count = math.prod(shape)
        if count > MAX_ELEMENTS:
            raise BadRequest(f"{where}: {count} elements is over the {MAX_ELEMENTS} limit")
        flat = _flatten(t["data"])
        if len(flat) != count:
            raise BadRequest(f"{where}: shape {shape} needs {count} values, the data has {len(flat)}")
        try:
            if dtype == "BYTES":
                arr = np.array([v if isinstance(v, (str, bytes)) else str(v) for v in flat], dtype=object)
            else:
                if dtype == "BOOL" and not all(isinstance(v, bool) for v in flat):
                    raise TypeError("BOOL data must be true/false")
                if dtype != "BOOL" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
                    raise TypeError("the data must be numbers")
                if dtype.startswith(("INT", "UINT")) and not all(isinstance(v, int) or float(v).is_integer() for v in flat):
                    raise TypeError(f"{dtype} data must be whole numbers")
                arr = np.array(flat, dtype=DATATYPES[dtype])
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRequest(f"{where}: the data does not fit datatype {dtype}: {exc}") from None
        names.append(name)
        arrays.append(arr.reshape(shape))
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    return names, arrays, params


def datatype_of(arr: np.ndarray) -> str:
    kind = arr.dtype.kind
    if kind in _FROM_KIND:
        return _FROM_KIND[kind]
    for name, t in DATATYPES.items():
        if t is not np.object_ and arr.dtype == np.dtype(t):
            return name
    raise TypeError(f"numpy dtype {arr.dtype} has no v2 datatype")


def encode_outputs(result: Any) -> list[dict[str, Any]]:
    """v2 output tensors for what a predict function returned: an array-like, or a dict name -> array-like.

    Raises TypeError (a server error: the predict function's fault, not the request's) when it
    cannot be sent as tensors.
    """
    items = result.items() if isinstance(result, dict) else [("output-0", result)]
    out = []
    for name, value in items:
        if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if arr.dtype.kind == "O":
            flat = arr.reshape(-1).tolist()
            if not all(isinstance(v, (str, bytes)) for v in flat):
                raise TypeError(f"output {name!r} holds {type(flat[0]).__name__ if flat else 'objects'}, "
                                "not numbers or strings: return arrays, lists of numbers, or a dict of them")
            data = [v.decode() if isinstance(v, bytes) else v for v in flat]
            dtype = "BYTES"
        else:
            dtype = datatype_of(arr)
            data = [v.decode() if isinstance(v, bytes) else v for v in arr.reshape(-1).tolist()]
        out.append({"name": str(name), "shape": list(arr.shape), "datatype": dtype, "data": data})
    return out


def tensor(name: str, value: Any) -> dict[str, Any]:
    """A v2 input tensor for ``value`` (client side: ``{"inputs": [tensor("x", X)]}``)."""
    return {**encode_outputs({name: value})[0]}


def decode_outputs(outputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Arrays from a v2 response's ``outputs`` (client side)."""
    res = {}
    for o in outputs:
        dtype = DATATYPES.get(o["datatype"], np.object_)
        res[o["name"]] = np.array(o["data"], dtype=dtype).reshape(o["shape"])
    return res
