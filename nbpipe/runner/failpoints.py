"""Crash the runner at a named point, for tests that prove crash safety (not for users).

``NBPIPE_FAILPOINT=NAME`` or ``NAME:N`` makes the runner ``os._exit(137)`` — as abrupt as
``kill -9`` — the Nth time (default the first) it passes point ``NAME``. Points:
``write`` (after any INSERT/UPDATE/DELETE statement, before its transaction commits),
``commit`` (right after a transaction committed), ``loop-crash`` (the scheduling loop task
dies, to test that ``/health`` reports it), ``tick-error`` (one pass of a run through the
scheduling loop raises, once, to test that the error stays inside that run). Unset: every
check is one dict lookup.
"""

from __future__ import annotations

import os
import sys

_SPEC = os.environ.get("NBPIPE_FAILPOINT", "")
_NAME, _, _N = _SPEC.partition(":")
_TARGET = int(_N) if _N.isdigit() else 1
_COUNTS: dict[str, int] = {}


def armed(name: str) -> bool:
    return bool(_SPEC) and name == _NAME


def hit(name: str) -> None:
    """Exit now if the failpoint ``name`` is armed and this is its Nth pass."""
    if not _SPEC or name != _NAME:
        return
    _COUNTS[name] = _COUNTS.get(name, 0) + 1
    if _COUNTS[name] >= _TARGET:
        sys.stderr.write(f"nbpipe: failpoint {_SPEC} reached, exiting\n")
        sys.stderr.flush()
        os._exit(137)


def error(name: str) -> None:
    """Raise once, on the Nth pass through point ``name``, if that failpoint is armed."""
    if not _SPEC or name != _NAME:
        return
    _COUNTS[name] = _COUNTS.get(name, 0) + 1
    if _COUNTS[name] == _TARGET:
        raise RuntimeError(f"failpoint {_SPEC}")
