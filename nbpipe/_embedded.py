"""Start (or find) the embedded local runner: one per ``NBPIPE_HOME``, shared by kernels.

The runner runs as a detached process on 127.0.0.1 (so it outlives a kernel restart and
``nbpipe.attach`` still finds its runs); ``NBPIPE_HOME/runner.json`` (mode 0600) says where it
listens and holds the token it generated, which the SDK, CLI and Lab extension send — like
Jupyter Server's runtime files, since loopback alone does not keep other users or web pages out.
A file lock keeps two kernels from starting two runners. Non-goal: remote runners.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .errors import RunnerError


def nbpipe_home() -> Path:
    return Path(os.environ.get("NBPIPE_HOME") or Path.home() / ".nbpipe").expanduser()


def _alive(url: str) -> bool:
    try:
        resp = httpx.get(f"{url}/api/v1/health", timeout=2.0)
        # 503: a runner that answers but is not scheduling; it is still the one on this data dir,
        # so it is reported (nbpipe runner status), never doubled by a second runner.
        return resp.status_code == 200 or (resp.status_code == 503 and "version" in resp.text)
    except httpx.HTTPError:
        return False


def _read_info(path: Path) -> dict[str, object] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def runtime_dir() -> Path:
    """Where every local runner of this user writes its URL and token (one 0600 file each), like Jupyter's."""
    return nbpipe_home() / "runtime"


def write_runtime_file(path: Path, info: dict[str, object]) -> None:
    """Write ``info`` (holding a token) atomically to an owner-only file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)
        fh.write(json.dumps(info))
    os.replace(tmp, path)


def runtime_token(url: str | None = None) -> str | None:
    """The token of a local runner started by this user: the embedded one, or (by ``url``) any other.

    Reads ``NBPIPE_HOME/runner.json`` and ``NBPIPE_HOME/runtime/runner-<pid>.json`` (mode 0600).
    """
    candidates = [nbpipe_home() / "runner.json"]
    if url is not None:
        try:
            candidates += sorted(runtime_dir().glob("runner-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            pass
    for path in candidates:
        info = _read_info(path)
        if not info or not info.get("token"):
            continue
        if url is None or str(info.get("url", "")).rstrip("/") == url.rstrip("/"):
            return str(info["token"])
    return None


def _pid_alive(pid: object) -> bool:
    try:
        os.kill(int(pid), 0)  # type: ignore[call-overload]
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # someone else's process took the pid: not our runner
        return False
    try:  # a pid reused by another program since (e.g. after a reboot) is not our runner
        return b"nbpipe" in Path(f"/proc/{int(pid)}/cmdline").read_bytes()  # type: ignore[call-overload]
    except OSError:
        return True  # no /proc here (macOS): trust the pid


def _wait_for_answer(info: dict[str, object], timeout: float, log_path: Path) -> str | None:
    """The URL once the runner answers; None if it exited first (e.g. it was stopping)."""
    url, deadline = str(info["url"]), time.time() + timeout
    while time.time() < deadline:
        if _alive(url):
            return url
        time.sleep(0.1)
        if not _pid_alive(info.get("pid")):
            return None
    raise RunnerError(f"The embedded nbpipe runner at {url} (pid {info.get('pid')}) is running but has not "
                      f"answered for {timeout:.0f} s",
                      hint=f"See {log_path}, or restart it: `nbpipe runner stop` then run again.")


def _owner_only(path: str, flags: int) -> int:
    """``open(..., opener=_owner_only)``: a new file is 0600 whatever the umask (the runner's log may
    quote step errors; NBPIPE_HOME may be a folder others can list)."""
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # one made by an older nbpipe under umask 022, too
    return fd


def ensure_local_runner(timeout: float = 60.0) -> str:
    """Return the URL of the embedded runner, starting it if needed."""
    home = nbpipe_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    info_path = home / "runner.json"
    info = _read_info(info_path)
    if info and _alive(str(info["url"])):
        return str(info["url"])
    with open(home / "runner.lock", "w", opener=_owner_only) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _read_info(info_path)
        if info and _alive(str(info["url"])):
            return str(info["url"])
        if info and _pid_alive(info.get("pid")):
            # Its runner is there but did not answer in time (a loaded machine): wait for it. A second
            # runner on the same data dir would refuse to start anyway (see RunnerConfig.claim_data_dir).
            url = _wait_for_answer(info, timeout, home / "runner.log")
            if url is not None:
                return url
        info_path.unlink(missing_ok=True)
        log_path = home / "runner.log"
        with open(log_path, "ab", opener=_owner_only) as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nbpipe.runner", "--host", "127.0.0.1", "--port", "0",
                 "--data-dir", str(home / "runner"), "--ready-file", str(info_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env={k: v for k, v in os.environ.items()
                     if k not in ("NBPIPE_TOKEN", "NBPIPE_TOKEN_FILE", "NBPIPE_HOST", "NBPIPE_PORT")},
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = _read_info(info_path)
            if info:
                return str(info["url"])
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise RunnerError("The embedded nbpipe runner exited while starting",
                                  "\n".join(tail), f"See {log_path}.")
            time.sleep(0.01)  # a cheap file check: the first run waits for the runner, not for this loop
        proc.kill()
        raise RunnerError(f"The embedded nbpipe runner did not start within {timeout:.0f} s", hint=f"See {log_path}.")


def stop_local_runner() -> bool:
    """Stop the embedded runner of this NBPIPE_HOME, if one runs. Returns True if one was stopped.

    Under ``runner.lock``, as :func:`ensure_local_runner` starts one: a client that finds the runner gone
    meanwhile (the Lab's status poll, a kernel's next call) starts the next one after this one has exited,
    and ``runner.json`` is removed only if it still names the stopped runner (it removed a new runner's, which
    then served the data dir unrecorded: every start said another runner held it)."""
    import signal

    home = nbpipe_home()
    if not _read_info(home / "runner.json"):
        return False
    with open(home / "runner.lock", "w", opener=_owner_only) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _read_info(home / "runner.json")
        if not info:
            return False
        try:
            pid = int(info["pid"])  # type: ignore[arg-type]
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError, ValueError, TypeError, KeyError):
            return False
        for _ in range(100):
            try:  # our own child (this kernel started it) stays a zombie, "alive" to kill(0), until reaped
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:  # not our child: its parent reaps it
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        now = _read_info(home / "runner.json")
        if now and now.get("pid") == info.get("pid"):
            (home / "runner.json").unlink(missing_ok=True)
    return True
