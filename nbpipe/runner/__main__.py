"""``python -m nbpipe.runner [--host H] [--port P] [--data-dir D] [--ready-file F]``: serve in the foreground.

The token comes from ``--token-file`` or ``NBPIPE_TOKEN`` (``--token`` works, with a warning: the
process re-execs itself at once with the token moved to its owner-only environment, so it does not
stay in ``/proc/PID/cmdline``); without one a token is generated and written to the ready file
(mode 0600), where the SDK, the CLI and the Lab extension read it.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import NbpipeError
from .config import RunnerConfig


def exit_with(pid: int) -> None:
    """Stop this runner (gracefully: SIGTERM to itself) once process ``pid`` is gone.

    ``NBPIPE_EXIT_WITH_PID``: for a runner that belongs to one session (a test session, a CI job)
    and must not outlive it when that session is killed without cleaning up."""
    import os
    import signal
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(2.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"nbpipe runner: process {pid} (NBPIPE_EXIT_WITH_PID) is gone; stopping", file=sys.stderr)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except PermissionError:  # alive, someone else's
                pass

    threading.Thread(target=watch, name="nbpipe-exit-with", daemon=True).start()


def hide_token_argument(token: str | None) -> None:
    """``--token T`` on the command line: warn, and re-exec this process without it.

    Every local user can read a process's command line (``ps``, ``/proc/PID/cmdline``) but only its
    owner its environment, so the token moves to ``NBPIPE_TOKEN`` (which the runner then removes
    from its own environment, so steps never inherit it). The pid stays the same (``execve``)."""
    import os

    if not token:
        return
    print("nbpipe runner: warning: --token is visible to every local user (ps, /proc/PID/cmdline) until this "
          "process hides it, and stays in your shell history; prefer --token-file or NBPIPE_TOKEN", file=sys.stderr)
    argv = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(argv):
        if arg == "--token" and i + 1 < len(argv) and argv[i + 1] == token:
            del argv[i:i + 2]
            break
        if arg == f"--token={token}":
            del argv[i]
            break
    else:
        return  # given some other way (an abbreviation): nothing to strip
    sys.stderr.flush()
    os.execve(sys.executable, argv, {**os.environ, "NBPIPE_TOKEN": token})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nbpipe.runner", description="Run the nbpipe runner.")
    ap.add_argument("--host", default=None)
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--token", default=None, help="discouraged: visible in the process list; use --token-file")
    ap.add_argument("--token-file", default=None, help="read the token from this file")
    ap.add_argument("--parallelism", type=int, default=None)
    ap.add_argument("--executor", default=None)
    ap.add_argument("--executor-options", default=None, metavar="JSON")
    ap.add_argument("--store", default=None)
    ap.add_argument("--store-options", default=None, metavar="JSON")
    ap.add_argument("--ready-file", default=None)
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    if argv is None:
        hide_token_argument(args.token)
    from .server import serve

    import os

    if os.environ.get("NBPIPE_EXIT_WITH_PID", "").strip().isdigit():
        exit_with(int(os.environ["NBPIPE_EXIT_WITH_PID"]))

    try:
        cfg = RunnerConfig.from_env(host=args.host, port=args.port, data_dir=args.data_dir, token=args.token,
                                    parallelism=args.parallelism, executor=args.executor, token_file=args.token_file,
                                    store_name=args.store, store_options=args.store_options,
                                    executor_options=args.executor_options)
        serve(cfg, ready_file=args.ready_file, log_level=args.log_level)
    except NbpipeError as exc:
        print(f"nbpipe runner: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
