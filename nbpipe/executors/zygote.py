"""A warm fork server for step processes: ``python -m nbpipe.executors.zygote``.

Starting ``python`` and importing cloudpickle costs 45–70 ms; forking a process that already
did costs ~2 ms. The local executor keeps one zygote and asks it (JSON lines on stdin) to
fork a fresh child per step attempt, so each attempt is still its own process (own session,
killable as a group, crash-isolated) with the same semantics as a cold start.

Protocol (one JSON object per line): request ``{"op": "spawn", "id", "job", "log", "workdir",
"env"}``; replies ``{"op": "spawned", "id", "pid"}`` then ``{"op": "exited", "id", "pid",
"code", "signal"}``. On stdin EOF (the runner died) the zygote kills its children and exits.
Non-goal: pooling children across attempts (that would leak state between steps).

Pre-forked spare: the zygote keeps one child forked *ahead* of the next request, already a session
leader with its signals reset and the zygote's descriptors closed, blocked reading its job from a
pipe of its own. A request goes to the spare (the fork and that setup are off the step's path) and
the next spare is forked when a step process exits (while the runner records its end) or when
the zygote is idle, not while a step runs: on a busy 2-core machine a fork next to the running step
slowed the step more than it saved. Each spare runs exactly one job, or none: it exits when its
pipe closes without one (a preload replaces it, so later steps see the preloaded modules).
"""

from __future__ import annotations

import atexit
import errno
import gc
import json
import os
import selectors
import signal
import sys
from typing import Any


def _write(fd: int, msg: dict[str, Any]) -> None:
    data = (json.dumps(msg) + "\n").encode()
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        data = data[n:]


LEFTOVERS_NOTE = (b"nbpipe: stopped the processes this step left running (a step's processes end with it, as a pod's "
                  b"do when its container ends; wait for them in the step if it needs their work)\n")


def end_leftovers(pid: int, log_path: str | None) -> None:
    """Kill what an ended step left running in its process group (``pid`` leads it) and say so in its log.

    A step is one session: background processes it started (a server, a ``subprocess.Popen`` it
    never waited for) would otherwise outlive it, unseen, holding ports, files and memory.
    """
    try:
        os.killpg(pid, 0)
    except OSError:  # nothing left: the usual case
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        return
    if log_path:
        try:
            with open(log_path, "ab") as fh:
                fh.write(LEFTOVERS_NOTE)
        except OSError:
            pass


def _become_step(keep: set[int]) -> None:
    """In a just-forked child: a session leader with default signals, none of the zygote's fds."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    for fd in keep:
        try:
            os.close(fd)
        except OSError:
            pass
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # not the runner's pipe to the zygote
    os.close(null)
    atexit._clear()  # the zygote's exit handlers are the zygote's; the step runs only its own (see _child)


def _child(req: dict[str, Any], keep: set[int], ready: bool = False) -> None:
    """In the forked child: become a session leader (unless ``ready``: a spare did), redirect output, run the job."""
    code = 2
    try:
        if not ready:
            _become_step(keep)
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        os.environ.update(req.get("env") or {})
        workdir = req.get("workdir")
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            os.chdir(workdir)
        if not ready:
            import faulthandler

            faulthandler.enable()
        from nbpipe.executors.entry import run_job

        code = run_job(req["job"], store=_OPEN.get(_store_id(req["job"].get("store"))))
    except BaseException as exc:  # noqa: BLE001 - last resort; the runner reads the exit code
        try:
            os.write(2, f"nbpipe: step process failed to start: {exc!r}\n".encode())
        except OSError:
            pass
    finally:
        try:
            run_exit_handlers()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# Local stores the zygote opened (see remember_store), by their config: a forked step inherits them instead
# of opening its own (~0.9 ms of a chain step: the store registry, signatures, paths, copy-on-write faults).
_OPEN: dict[str, Any] = {}


def _store_id(config: Any) -> str:
    return json.dumps(config, sort_keys=True)


def remember_store(config: Any) -> None:
    """Open a step's store in the zygote, so later forks have it: local ones only (an S3 store's
    connections must not be shared between processes). A store that cannot be opened is left to the step."""
    inner = (config or {}).get("store") if (config or {}).get("type") == "prefixed" else config
    if not isinstance(inner, dict) or inner.get("type") != "local" or len(_OPEN) >= 16:
        return
    key = _store_id(config)
    if key not in _OPEN:
        try:
            from nbpipe.executors.entry import open_store

            _OPEN[key] = open_store(config)
        except Exception:  # noqa: BLE001 - the step opens it and reports
            pass


def run_exit_handlers() -> None:
    """Run the ``atexit`` handlers the step's code registered (W&B's ``finish``, MLflow's ``end_run``,
    a user's own), as a normal interpreter exit would, before the step process ends with ``os._exit``
    (which skips the slow teardown of everything it imported, but also those handlers). Their errors
    are printed to the step's log, as Python prints them, and do not change the step's result."""
    try:
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - never in the way of the exit
        pass


def _spare(job_fd: int, keep: set[int]) -> None:
    """In a pre-forked spare: get ready, then wait for one job on ``job_fd`` (none at EOF: exit)."""
    try:
        _become_step(keep)
        import faulthandler

        faulthandler.enable()  # on fd 2, which will be the step's log
        chunks = []
        while True:
            chunk = os.read(job_fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(job_fd)
        if not chunks:
            os._exit(0)
        req = json.loads(b"".join(chunks))
    except BaseException:  # noqa: BLE001 - a spare that cannot start reports no job: the zygote forks again
        os._exit(3)
    _child(req, keep, ready=True)


class _Spares:
    """The zygote's one pre-forked spare child (see the module docstring)."""

    def __init__(self, keep: set[int]):
        self.keep = keep
        self.pid = 0
        self.fd = -1

    def fork(self) -> None:
        if self.pid:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            _spare(r, self.keep)
        os.close(r)
        self.pid, self.fd = pid, w

    def discard(self) -> None:
        """Let the spare exit without a job (it is reaped like any child, reported to nobody)."""
        if self.pid:
            os.close(self.fd)
            self.pid, self.fd = 0, -1

    def stop(self) -> None:
        """The zygote is exiting: end the spare and reap it (so it is never left to init)."""
        pid = self.pid
        self.discard()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass

    def gone(self, pid: int) -> None:
        """``pid`` exited: if it was the spare, fork another at the next request."""
        if pid == self.pid:
            os.close(self.fd)
            self.pid, self.fd = 0, -1

    def hand(self, req: dict[str, Any], line: bytes) -> int:
        """Give ``req`` to the spare (a fresh fork if it is gone); its pid."""
        for _ in range(2):
            self.fork()
            pid, fd = self.pid, self.fd
            self.pid, self.fd = 0, -1
            try:
                os.set_blocking(fd, True)
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                return pid
            except BrokenPipeError:  # the spare died before its job (killed): reaped later, fork another
                continue
            finally:
                os.close(fd)
        pid = os.fork()  # a spare cannot take jobs here at all: fork per request, as before spares
        if pid == 0:
            _child(req, self.keep)
        return pid


def _import_names(requirements: list[str]) -> list[str]:
    """Top-level module names of installed distributions (``scikit-learn`` → ``sklearn``)."""
    import re
    from importlib.metadata import packages_distributions

    by_dist: dict[str, list[str]] = {}
    for module, dists in packages_distributions().items():
        for d in dists:
            by_dist.setdefault(re.sub(r"[-_.]+", "-", d).lower(), []).append(module)
    names: list[str] = []
    for req in requirements:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if m:
            names += [n for n in by_dist.get(re.sub(r"[-_.]+", "-", m.group(1)).lower(), [])
                      if n.isidentifier() and not n.startswith("_")]
    return names


def _preload(requirements: list[str]) -> None:
    """Import the packages steps declared, once, so every later fork starts with them loaded.

    An optimisation only: a package that fails to import here is imported (and reported)
    by the step itself.
    """
    for name in _import_names(requirements):
        if name in sys.modules:
            continue
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001 - the step will import it and report
            pass


def main() -> int:
    # Preload what every step needs, plus anything the runner asks for (NBPIPE_PRELOAD).
    import cloudpickle  # noqa: F401

    import nbpipe.executors.entry  # noqa: F401
    import nbpipe.stores.local  # noqa: F401

    for mod in filter(None, os.environ.get("NBPIPE_PRELOAD", "").split(",")):
        try:
            __import__(mod.strip())
        except Exception:  # noqa: BLE001 - a preload is an optimisation only
            pass
    out_fd = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # stray prints in the zygote must not corrupt the protocol
    os.close(null)
    in_fd = 0
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    os.set_blocking(in_fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(in_fd, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    children: dict[int, str] = {}
    logs: dict[int, str | None] = {}  # each child's log path
    buf = b""
    eof = False
    gc.freeze()  # what is loaded now is never collected in a child: no copy-on-write of the whole heap
    spares = _Spares({out_fd, wake_r, wake_w})
    _write(out_fd, {"op": "ready", "pid": os.getpid()})
    spares.fork()
    while not eof or children:
        events = sel.select(timeout=1.0)
        if not events and not eof:
            spares.fork()  # idle: have one ready (e.g. after a preload discarded it)
        for key, _ in events:
            if key.fd == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            elif key.fd == in_fd:
                try:
                    chunk = os.read(in_fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    eof = True
                    sel.unregister(in_fd)
                    spares.stop()
                    for pid in list(children):
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    continue
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    req = json.loads(line)
                    if req.get("op") == "preload":
                        spares.discard()  # forked before the preload: later steps get a spare that has it
                        _preload(req.get("packages") or [])
                        gc.freeze()
                        continue
                    if req.get("op") != "spawn":
                        continue
                    pid = spares.hand(req, line)
                    children[pid] = req["id"]
                    logs[pid] = req.get("log")
                    _write(out_fd, {"op": "spawned", "id": req["id"], "pid": pid})
                    remember_store(req["job"].get("store"))  # for the spares forked from now on
        while True:  # every exited child, the spares included
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if pid == 0:
                break
            att = children.pop(pid, None)
            if att is None:
                spares.gone(pid)
                continue
            end_leftovers(pid, logs.pop(pid, None))
            msg: dict[str, Any] = {"op": "exited", "id": att, "pid": pid, "code": None, "signal": None}
            if os.WIFSIGNALED(status):
                msg["signal"] = os.WTERMSIG(status)
            else:
                msg["code"] = os.WEXITSTATUS(status)
            if not eof:
                _write(out_fd, msg)
                spares.fork()  # the next step's, while the runner records this one's end
    return 0


if __name__ == "__main__":
    sys.exit(main())
