"""Runner settings from arguments and ``NBPIPE_*`` environment variables.

Non-goal: the client's configuration (which runner to talk to): see :mod:`nbpipe.client`.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._embedded import nbpipe_home
from ..errors import NbpipeError


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]", "localhost.localdomain")


def is_loopback(host: str) -> bool:
    """True only for names and addresses that stay on this machine ("" means all interfaces: not)."""
    host = host.strip().lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class RunnerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = field(default_factory=lambda: nbpipe_home() / "runner")
    token: str | None = None
    token_generated: bool = False  # no token was given: one was made up at start (loopback only)
    parallelism: int = 0  # 0: max(16, 4 x CPUs)
    executor: str = "local"
    executor_options: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] | None = None  # Store.config(); None: a local folder in data_dir
    database_url: str | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> "RunnerConfig":
        cfg = cls()
        env = os.environ
        cfg.host = env.get("NBPIPE_HOST", cfg.host)
        cfg.port = int(env.get("NBPIPE_PORT", cfg.port))
        if env.get("NBPIPE_DATA_DIR"):
            cfg.data_dir = Path(env["NBPIPE_DATA_DIR"])
        # The token never stays in this process's environment: step processes must not inherit it.
        cfg.token = os.environ.pop("NBPIPE_TOKEN", None) or None
        token_arg = overrides.pop("token_file", None)
        token_file = token_arg or os.environ.pop("NBPIPE_TOKEN_FILE", None)
        if token_file:
            cfg.token = read_token_file(token_file)
        cfg.parallelism = int(env.get("NBPIPE_PARALLELISM", 0))
        cfg.executor = env.get("NBPIPE_EXECUTOR", cfg.executor)
        cfg.database_url = env.get("NBPIPE_DATABASE_URL") or None
        store_name = overrides.pop("store_name", None) or env.get("NBPIPE_STORE") or "local"
        store_opts = _json_options(overrides.pop("store_options", None), "NBPIPE_STORE_OPTIONS", "--store-options")
        exec_opts = _json_options(overrides.pop("executor_options", None), "NBPIPE_EXECUTOR_OPTIONS",
                                  "--executor-options")
        cfg.store = store_config(store_name, store_opts)
        cfg.executor_options = dict(exec_opts)
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        from .. import executors

        executors.get(cfg.executor)  # an unknown or broken executor fails here, naming the known ones
        cfg.data_dir = Path(cfg.data_dir).expanduser().resolve()
        return cfg

    def check(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise NbpipeError(
                f"Refusing to listen on {self.host or 'all interfaces'} without a token",
                "anyone who can reach this address could run code on this machine.",
                "Set NBPIPE_TOKEN (or --token-file) to a long random secret, or bind to 127.0.0.1.",
            )

    def claim_data_dir(self) -> int:
        """Hold the data dir for this process's lifetime (an exclusive ``flock``; the kernel drops it
        when the process ends, even by SIGKILL). Two runners on one data dir would both schedule,
        recover and write the same runs: the second refuses to start instead. Returns the lock's fd,
        which the caller keeps open."""
        import fcntl

        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.data_dir / "runner.pid"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by step processes (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise NbpipeError(
                f"Another nbpipe runner (pid {holder}) is already serving the data dir {self.data_dir}",
                "two runners on one data dir would both run and recover the same runs.",
                "Use that runner (`nbpipe runner status`), stop it (`nbpipe runner stop` or kill the pid), "
                "or give this one another --data-dir.",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def ensure_token(self) -> str:
        """The token every request must carry; made up now (and written to the 0600 ready file) if none was given."""
        if not self.token:
            import secrets

            self.token, self.token_generated = secrets.token_urlsafe(32), True
        return self.token

    @property
    def effective_parallelism(self) -> int:
        return self.parallelism or max(16, 4 * (os.cpu_count() or 1))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'nbpipe.db'}"

    @property
    def store_config(self) -> dict[str, Any]:
        return self.store or {"type": "local", "root": str(self.data_dir / "store")}


def _json_options(given: str | None, var: str, flag: str) -> dict[str, Any]:
    import json

    text = given if given is not None else os.environ.get(var, "")
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise NbpipeError(f"{flag} / {var} is not JSON ({exc})", hint='Write a JSON object, e.g. {"root": "/data"}.') from None
    if not isinstance(value, dict):
        raise NbpipeError(f"{flag} / {var} must be a JSON object, got {type(value).__name__}",
                          hint='Write a JSON object, e.g. {"root": "/data"}.')
    return value


def store_config(name: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The store's config (``{"type": name, **options}``; ``s3`` also from ``NBPIPE_S3_*``), checked now.

    ``None`` is the default local folder in the data dir. An unknown or broken store, or an
    option it does not take, is an error here, before the runner starts.
    """
    from .. import stores

    if name == "local" and not options:
        stores.get(name)
        return None
    cfg: dict[str, Any] = {"type": name}
    if name == "s3":
        env = os.environ
        cfg |= {"endpoint": env.get("NBPIPE_S3_ENDPOINT", "http://127.0.0.1:9000"),
                "bucket": env.get("NBPIPE_S3_BUCKET", "nbpipe"), "prefix": env.get("NBPIPE_S3_PREFIX", "")}
    cfg |= options
    # unknown: lists the known names; a plugin that fails to load: names its distribution; bad options
    stores.check(name, {k: v for k, v in cfg.items() if k != "type"})
    return cfg


def read_token_file(path: str | os.PathLike[str]) -> str:
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise NbpipeError(f"Cannot read the token file {path} ({exc.strerror})") from None
    if not token:
        raise NbpipeError(f"The token file {path} is empty")
    return token
