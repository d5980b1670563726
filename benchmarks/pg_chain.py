"""The chain figure on PostgreSQL vs. SQLite metadata (issue 14, item 6): target within 1.5x.

``python benchmarks/pg_chain.py [--rounds N] [--runs N]`` starts a private PostgreSQL server the way
``tests/test_postgres.py`` does (Debian's binaries, ``initdb`` into a temporary folder, a loopback
port, ``fsync=off``; as root it runs as ``postgres``), then alternates SQLite and PostgreSQL rounds,
each a fresh embedded runner (``benchmarks/overhead.py``'s measurement in a child process with
``NBPIPE_DATABASE_URL`` set or not): the 10-step chain's median per-step time and the runner's CPU
per step, and the cached re-run. Prints medians over rounds with the load average, and the ratio.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres() -> tuple[str, Path, Path]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise SystemExit("PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin): make system-deps")
    bin_dir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="nbpipe-pgbench-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_pg([str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "nbpipe", "--auth=trust",
                           "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} -c fsync=off"
    subprocess.run(_as_pg([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-o", opts, "-l",
                           str(folder / "server.log"), "-w", "-t", "60", "start"]), check=True, capture_output=True)
    return f"postgresql+psycopg://nbpipe@127.0.0.1:{port}", bin_dir, folder


def stop_postgres(bin_dir: Path, folder: Path) -> None:
    subprocess.run(_as_pg([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"]),
                   capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def new_database(server: str) -> str:
    name = f"bench_{os.urandom(4).hex()}"
    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{server}/{name}"


def one_round(url: str | None, runs: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "NBPIPE_DATABASE_URL"}
    if url:
        env["NBPIPE_DATABASE_URL"] = url
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    subprocess.run([sys.executable, str(HERE / "overhead.py"), "--runs-cached", "30", "--runs-chain", str(runs),
                    "--out", out], check=True, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL)
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return {"per_step_ms": data["chain"]["per_step_median_ms"], "runner_cpu_ms": data["chain"]["runner_cpu_ms_per_step"],
            "cached_ms": data["cached"]["median_ms"], "load": data["chain"]["load_before"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10, help="chain runs per round")
    ap.add_argument("--out", default=str(HERE / "results" / "pg_chain.json"))
    args = ap.parse_args()
    server, bin_dir, folder = start_postgres()
    rows: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgresql": []}
    try:
        for _ in range(args.rounds):  # interleaved: both see the same machine load
            rows["sqlite"].append(one_round(None, args.runs))
            rows["postgresql"].append(one_round(new_database(server), args.runs))
    finally:
        stop_postgres(bin_dir, folder)
    med = {db_: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for db_, rs in rows.items()}
    ratio = med["postgresql"]["per_step_ms"] / med["sqlite"]["per_step_ms"]
    for db_, m in med.items():
        print(f"{db_:<10} chain per-step {m['per_step_ms']:.1f} ms, runner CPU {m['runner_cpu_ms']:.2f} ms/step, "
              f"cached re-run {m['cached_ms']:.1f} ms (load {m['load']:.1f})")
    print(f"PostgreSQL / SQLite, chain per-step: {ratio:.2f}x (target <= 1.5x)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rounds": rows, "median": med, "ratio": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
