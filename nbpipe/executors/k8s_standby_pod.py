"""Inside a standby pod: import what the steps to come need, then wait for one job in the store.

A standby pod (see :mod:`.k8s_standby`) is started by the Kubernetes executor before its step is
ready, with the pod spec that step will get and, in ``NBPIPE_JOB``, a stand-in job
``{"standby": {"job_key", "idle", "poll"}, "store", "packages", "imports", "component"}``. Its
entrypoint (:func:`nbpipe.executors.entry.start`) calls :func:`wait_for_job`, which

1. installs the component's ``packages`` the image lacks (as the step would) and imports them, with
   the zygote's preload (:func:`nbpipe.executors.zygote._preload`), so the step's own imports are
   dictionary look-ups;
2. reads ``job_key`` from the store every ``poll`` seconds until the runner puts the step's job
   there, and returns it: the entrypoint then runs it exactly as a normal pod's;
3. gives up after ``idle`` seconds without one, but only after reading the key once more, and the
   pod exits 0 by itself (nothing leaks when the runner is gone).

The runner only hands a job to a standby pod whose ``idle`` seconds, counted from before it asked
for the pod, have not run out once the job is in the store; since the pod cannot have started
earlier than that, its last read comes after the job is there (see ``StandbyPool.bind``).
Talks to nothing but the store, as every step pod.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..stores.base import Store

STARTED = time.monotonic()  # (the idle clock starts no earlier than the pod: the safe side)
FAST_FOR, SLOW_POLL = 20.0, 0.2  # after 20 s without a job, read the store 5 times a second, not 20
WARM_OUTPUT: list[str] = []  # what the package check printed while warming: the step's log gets it once bound


def _ready(packages: list[str]) -> bool:
    """Whether ``packages`` can be imported without installing: the image has them, or the package
    cache holds a complete install of what it lacks."""
    import os
    from pathlib import Path

    from . import entry
    from .envs import constraints, env_key, missing

    if entry._pins_hold(packages):
        return True
    lacking = missing(packages)
    cache = os.environ.get("NBPIPE_PACKAGE_CACHE") or ""
    return not lacking or bool(cache) and (Path(cache) / env_key(lacking, constraints(lacking)) / ".nbpipe-complete").exists()


def warm(ref: dict[str, Any]) -> None:
    """Import the component's packages (and what every step imports) when they need no install.

    A standby pod never installs: it is started next to the pods of the steps before it, which may
    be installing the same set, and the package cache installs a set once (the step, once bound,
    finds it there). Nor does it import a package whose version the step must install instead.
    An optimisation only: a failure here is the step's to meet and report."""
    try:
        import cloudpickle  # noqa: F401

        from ..pins import check  # noqa: F401
        from ..serializers import dump_value  # noqa: F401
        from . import entry

        packages = list(ref.get("packages") or ())
        if packages:
            if not _ready(packages):
                return
            import contextlib
            import io

            said = io.StringIO()  # ("packages ... from the package cache": the bound step's log says it, see entry)
            try:
                with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                    entry._check_packages(ref)
            except Exception:  # noqa: BLE001 - the step checks again and reports
                return
            finally:
                WARM_OUTPUT.append(said.getvalue())
        from .zygote import _preload

        _preload(packages + list(ref.get("imports") or ()))
    except Exception:  # noqa: BLE001 - see above
        pass


def _read(store: Store, key: str) -> bytes | None:
    try:
        return store.get_bytes(key)
    except (KeyError, FileNotFoundError):
        return None


def wait_for_job(store: Store, ref: dict[str, Any]) -> dict[str, Any] | None:
    """The job the runner puts under ``ref["standby"]["job_key"]``, or ``None`` after ``idle`` seconds."""
    info = ref["standby"]
    key, idle, poll = str(info["job_key"]), float(info.get("idle") or 120.0), float(info.get("poll") or 0.05)
    warm(ref)
    deadline = STARTED + idle
    errors = 0
    while True:
        last = time.monotonic() >= deadline
        try:
            data = _read(store, key)
        except Exception as exc:  # noqa: BLE001 - the store may blink; say so once in a while
            errors += 1
            if errors in (1, 10, 100):
                sys.stderr.write(f"nbpipe: standby pod could not read {key} from the store: {exc}\n")
            if last and errors < 100:
                time.sleep(poll)
                continue  # the last read must be one that answered
            data = None
        if data is not None:
            return dict(json.loads(data))
        if last:  # this read began after the deadline: a job put before it is not missed
            return None
        slow = max(poll, SLOW_POLL) if time.monotonic() - STARTED > FAST_FOR else poll  # (a pod kept for a next run)
        time.sleep(min(slow, max(0.0, deadline - time.monotonic())))
