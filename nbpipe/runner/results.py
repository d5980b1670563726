"""Check what a step process reports before the scheduler believes it.

A step's ``result.json`` is written by user-controlled code (a step can overwrite it), so the
scheduler never indexes into it blindly: the shape, the output names and kinds, the store keys
(a forged ``../../etc/passwd`` must never reach the store) and the numbers are checked here.
A bad result fails that step with "invalid result from the step: …". Non-goal: reading the
output bytes (the runner never unpickles anything).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..stores.base import content_key

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_SIZE = 2**63 - 1
KINDS = ("value", "artifact")


class InvalidResult(ValueError):
    """A step result that does not have the shape the runner expects."""


def _str(v: Any, what: str, limit: int = 4096) -> str:
    if not isinstance(v, str) or len(v) > limit or "\x00" in v:
        raise InvalidResult(f"{what} must be a string of at most {limit} characters")
    return v


def check_output(name: str, o: Any) -> dict[str, Any]:
    if not isinstance(o, dict):
        raise InvalidResult(f"output '{name}' is not an object")
    digest = o.get("digest")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise InvalidResult(f"output '{name}' has no sha256 digest")
    if o.get("key") != content_key(digest):
        raise InvalidResult(f"output '{name}' has a store key that does not match its digest: {str(o.get('key'))[:80]!r}")
    if o.get("kind") not in KINDS:
        raise InvalidResult(f"output '{name}' has an unknown kind {str(o.get('kind'))[:40]!r}")
    _str(o.get("format"), f"output '{name}' format", 40)
    size = o.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise InvalidResult(f"output '{name}' has an invalid size")
    for opt in ("filename", "artifact_type"):
        if opt in o:
            _str(o[opt], f"output '{name}' {opt}", 1024)
    if "metadata" in o and not isinstance(o["metadata"], (dict, type(None))):
        raise InvalidResult(f"output '{name}' metadata is not an object")
    if "preview" in o and not isinstance(o["preview"], (dict, type(None))):
        raise InvalidResult(f"output '{name}' preview is not an object")
    return o


def check_outputs(outputs: Any, declared: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Validate an outputs mapping (from a result or the cache); with ``declared``, names and kinds too."""
    if not isinstance(outputs, dict):
        raise InvalidResult("outputs is not an object")
    for name, o in outputs.items():
        check_output(str(name), o)
    if declared is not None:
        kinds = {d["name"]: d.get("kind") for d in declared}
        extra = sorted(set(outputs) - set(kinds))
        missing = sorted(set(kinds) - set(outputs))
        if extra:
            raise InvalidResult(f"undeclared outputs {', '.join(extra)[:200]}")
        if missing:
            raise InvalidResult(f"missing outputs {', '.join(missing)[:200]}")
        for name, o in outputs.items():
            if kinds[name] in KINDS and o["kind"] != kinds[name]:
                raise InvalidResult(f"output '{name}' is a {o['kind']}, declared a {kinds[name]}")
    return outputs


def check_result(result: Any, declared: list[dict[str, Any]]) -> dict[str, Any]:
    """Validate a step's result JSON; raises :class:`InvalidResult` with what is wrong."""
    if not isinstance(result, dict):
        raise InvalidResult("the result is not a JSON object")
    status = result.get("status")
    if status not in ("succeeded", "failed"):
        raise InvalidResult(f"unknown status {str(status)[:40]!r}")
    if status == "succeeded":
        check_outputs(result.get("outputs"), declared)
    err = result.get("error")
    if err is not None:
        if not isinstance(err, dict):
            raise InvalidResult("error is not an object")
        for k in ("type", "message", "traceback"):
            if k in err and err[k] is not None:
                err[k] = _error_text(err[k], f"error {k}", 1 << 20)
    return result


def _error_text(v: Any, what: str, limit: int) -> str:
    """The user's own error, kept: a NUL shown as ``\\x00`` (no database column may hold one), an
    over-long text cut (not "invalid result" in place of their exception)."""
    if not isinstance(v, str):
        raise InvalidResult(f"{what} is not a string")
    v = v.replace("\x00", "\\x00")
    return v if len(v) <= limit else v[:limit] + f"… ({len(v) - limit} more characters cut)"


def backoff_delay(options: dict[str, Any], attempt: int) -> float:
    """Seconds before retry ``attempt + 1``: exponential, capped, never an overflow or NaN."""
    def num(key: str, default: float) -> float:
        v = options.get(key, default)
        try:
            v = float(v)
        except (TypeError, ValueError, OverflowError):
            return default
        return v if math.isfinite(v) and v >= 0 else default

    base, factor, cap = num("backoff", 1.0), num("backoff_factor", 2.0), num("max_backoff", 300.0)
    try:
        delay = base * factor ** max(0, attempt - 1)
    except OverflowError:
        delay = cap
    if not math.isfinite(delay):
        delay = cap
    return max(0.0, min(delay, cap, 7 * 24 * 3600.0))
