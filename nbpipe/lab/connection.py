"""Which runner the Lab panel uses, and one :class:`nbpipe.Client` for it.

The runner URL setting is the same one the SDK and the CLI read: ``NBPIPE_RUNNER_URL``
(``NBPIPE_TOKEN``) wins when set, else ``runner`` / ``token`` in ``NBPIPE_HOME/config.json``,
else the embedded local runner, started on demand. The panel may change the file, never the
environment. Tokens are written here but never sent back to the browser.

Non-goals: starting or stopping a remote runner; checking a runner's identity beyond health.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._embedded import nbpipe_home
from ..errors import NbpipeError, RunnerError


@dataclass(frozen=True)
class RunnerSetting:
    """Where the runner URL comes from.

    Attributes
    ----------
    url : str or None
        The runner's base URL; ``None`` means the embedded local runner.
    token : str or None
        Bearer token for a remote runner.
    source : str
        ``"env"`` (read-only here), ``"config"`` (``NBPIPE_HOME/config.json``) or ``"default"``.

    """

    url: str | None
    token: str | None
    source: str
    user: str | None = None  # behind JupyterHub: the hub user, forwarded to the runner

    def public(self) -> dict[str, Any]:
        """The setting as the browser may see it: no token, only whether one is set."""
        return {
            "runner_url": self.url,
            "has_token": bool(self.token),
            "source": self.source,
            "editable": self.source != "env",
            "config_path": str(config_path()),
        }


def config_path() -> Path:
    """``NBPIPE_HOME/config.json``, shared with :mod:`nbpipe.client` and the CLI."""
    return nbpipe_home() / "config.json"


def _read_config() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        raise NbpipeError(f"{path} is not valid JSON", hint="Fix or delete it.") from None
    if not isinstance(data, dict):
        raise NbpipeError(f"{path} does not hold a JSON object", hint="Fix or delete it.")
    return data


def hub_user() -> str | None:
    """The JupyterHub user this server runs for (``JUPYTERHUB_USER``, set by the hub's spawner).

    It is sent to a remote runner as ``X-Nbpipe-User``; the runner believes it only when the token
    is its configured proxy token (see :mod:`nbpipe.runner.auth`), else it is ignored.
    """
    return os.environ.get("JUPYTERHUB_USER") or None


def read_setting() -> RunnerSetting:
    """The runner setting in force now (environment first, then the config file)."""
    if os.environ.get("NBPIPE_RUNNER_URL"):
        return RunnerSetting(
            os.environ["NBPIPE_RUNNER_URL"].rstrip("/"), os.environ.get("NBPIPE_TOKEN"), "env", hub_user()
        )
    data = _read_config()
    if data.get("runner"):
        return RunnerSetting(str(data["runner"]).rstrip("/"), data.get("token") or None, "config", hub_user())
    return RunnerSetting(None, None, "default")


def check_url(url: str) -> str:
    """Return ``url`` without a trailing slash, or raise if it is not an http(s) base URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise NbpipeError(
            f"{url!r} is not a runner URL",
            hint="Use http://HOST:PORT (for example http://127.0.0.1:8765), or leave it empty "
            "for the embedded local runner.",
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise NbpipeError(f"{url!r} has an invalid port", hint="Use a port number from 1 to 65535.") from None
    return url.strip().rstrip("/")


def write_setting(url: str | None, token: str | None = None, keep_token: bool = True) -> RunnerSetting:
    """Store the runner URL (``None``/empty: embedded) in ``NBPIPE_HOME/config.json``.

    Parameters
    ----------
    url : str or None
        New runner URL; empty or ``None`` selects the embedded local runner.
    token : str or None
        New token; ignored when ``keep_token`` and it is ``None``.
    keep_token : bool
        Keep the stored token when no new one is given (the browser never sees it to resend it).

    """
    if os.environ.get("NBPIPE_RUNNER_URL"):
        raise NbpipeError(
            "The runner URL is set by the NBPIPE_RUNNER_URL environment variable",
            hint="Unset it and restart Jupyter to choose the runner from the panel.",
        )
    data = _read_config()
    if url:
        data["runner"] = check_url(url)
        if token is not None or not keep_token:
            if token:
                data["token"] = token
            else:
                data.pop("token", None)
    else:
        data.pop("runner", None)
        data.pop("token", None)
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.chmod(tmp, 0o600)  # may hold a token
    os.replace(tmp, path)
    return read_setting()


class RunnerConnection:
    """One :class:`nbpipe.Client` for the current setting, rebuilt when the setting changes.

    Methods are blocking (the client is synchronous); handlers call them in a worker thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: Any = None
        self._setting: RunnerSetting | None = None

    def client(self) -> Any:
        """The client for the setting in force, starting the embedded runner if that is the setting."""
        from ..client import Client

        setting = read_setting()
        with self._lock:
            # The embedded runner stopped or started again (on another port) since: a new client,
            # which starts it again if it is not running, instead of calling a dead address forever.
            moved = (self._client is not None and not setting.url
                     and self.embedded_url() != getattr(self._client, "url", None))
            if self._client is None or setting != self._setting or moved:
                if self._client is not None:
                    self._client.close()
                self._client = (Client(setting.url, setting.token, user=setting.user) if setting.url
                                else Client(None))
                self._setting = setting
            return self._client

    def embedded_url(self) -> str | None:
        """The embedded runner's URL if one is running for this ``NBPIPE_HOME`` (never starts one)."""
        info = nbpipe_home() / "runner.json"
        try:
            return str(json.loads(info.read_text())["url"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def status(self) -> dict[str, Any]:
        """URL, mode and reachability of the runner in force; never starts the embedded runner."""
        setting = read_setting()
        url = setting.url or self.embedded_url()
        out: dict[str, Any] = {
            "mode": "remote" if setting.url else "embedded",
            "url": url,
            "source": setting.source,
            "reachable": False,
            "error": "",
            "health": None,
        }
        if url is None:
            out["error"] = "The embedded runner starts with the first run."
            return out
        from ..client import Client

        probe = Client(url, setting.token, timeout=3.0, user=setting.user)
        try:
            out["health"] = probe.health()
            out["reachable"] = True
        except RunnerError as exc:
            stalled = _stalled(probe)
            if stalled is not None:  # it answers, but its scheduling loop stopped: say so, not "stopped"
                out.update(reachable=True, stalled=True, health=stalled,
                           error=str(stalled.get("message") or "The runner is not scheduling runs"))
                return out
            out["error"] = exc.message
            if not setting.url:  # the embedded runner died: the next client() starts a new one
                out["error"] = "The embedded runner stopped; the next run (or Runs list) starts it again."
                self._forget(url)
        finally:
            probe.close()
        return out

    def _forget(self, url: str) -> None:
        """Drop the cached client of a runner at ``url`` that no longer answers."""
        with self._lock:
            if self._client is not None and getattr(self._client, "url", None) == url:
                self._client.close()
                self._client = None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _stalled(probe: Any) -> dict[str, Any] | None:
    """The health body of a runner that answers 503 'stalled' (its loop is not ticking), else None."""
    try:
        resp = probe._http.get("/api/v1/health")  # noqa: SLF001 - the raw answer, not the raised error
        body = resp.json()
    except Exception:  # noqa: BLE001 - not answering, or not JSON: not a stalled runner
        return None
    if resp.status_code == 503 and isinstance(body, dict) and body.get("status") == "stalled":
        return body
    return None
