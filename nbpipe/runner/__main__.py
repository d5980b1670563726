"""``python -m nbpipe.runner [--host H] [--port P] [--data-dir D] [--ready-file F]``: serve in the foreground.

The token comes from ``--token-file`` or ``NBPIPE_TOKEN`` (``--token`` works but is visible to
every local user in ``/proc/PID/cmdline``); without one a token is generated and written to the
ready file (mode 0600), where the SDK, the CLI and the Lab extension read it.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import NbpipeError
from .config import RunnerConfig


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
    from .server import serve

    if args.token:
        print("nbpipe runner: warning: --token is visible to every local user (ps, /proc/PID/cmdline); "
              "prefer --token-file or NBPIPE_TOKEN", file=sys.stderr)
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
