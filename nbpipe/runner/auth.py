"""Who is calling: tokens → users (name, role, profiles), from a users file re-read when it changes.

The runner's own token (``NBPIPE_TOKEN``/``--token-file``, or the one generated for a loopback runner)
is the *local* admin, so a single-user runner stays zero-config. ``NBPIPE_USERS_FILE`` adds users —
JSON or YAML, tokens stored only as sha256 hashes (a Kubernetes Secret mounted as that file works:
the kubelet swaps the file and the next request sees the new table)::

    users:
      - {name: alice, role: user, profiles: [team-a], token_sha256: "<sha256 of alice's token>"}
      - {name: bob, role: admin, token_sha256: "..."}
      - {name: carol, profiles: [team-a, team-b]}     # no token: only via the proxy below
    proxy:                                           # JupyterHub: the Lab server extension
      token_sha256: "..."                            # forwards the hub user in X-Nbpipe-User,
                                                     # trusted only with this token

A forwarded user who is not listed gets role ``user`` and their own profile ``user-<name>``
(Kubeflow's one-profile-per-user default; the prefix keeps a hub login named like a team's profile
out of that team's). ``nbpipe.runner.auth.hash_token`` makes a hash.
Non-goals: what a user may see (see :mod:`.profiles`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import NbpipeError

log = logging.getLogger("nbpipe.runner")

DEFAULT_PROFILE = "default"
USER_HEADER = "x-nbpipe-user"
PROFILE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a Kubernetes namespace name
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
ROLES = ("user", "admin")


def own_profile(name: str) -> str:
    """A user's own profile: ``user-<name>`` (the prefix keeps a hub login from matching a team's profile)."""
    return ("user-" + re.sub(r"[^a-z0-9-]+", "-", str(name).lower())).strip("-")[:63].rstrip("-")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    role: str = "user"
    profiles: tuple[str, ...] = ()

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def sees(self, profile: str) -> bool:
        return self.admin or profile in self.profiles

    @property
    def default_profile(self) -> str:
        return self.profiles[0] if self.profiles else DEFAULT_PROFILE

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "profiles": list(self.profiles),
                "default_profile": self.default_profile}


LOCAL = User("local", "admin", (DEFAULT_PROFILE,))


@dataclass
class _Table:
    by_hash: dict[str, User] = field(default_factory=dict)
    by_name: dict[str, User] = field(default_factory=dict)
    proxy_hashes: frozenset[str] = frozenset()


def _parse(path: Path, text: str) -> _Table:
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        try:
            data = json.loads(text or "{}")
        except ValueError:
            import yaml

            data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError("the top level is not a mapping with 'users'")
    table = _Table()
    for i, u in enumerate(data.get("users") or []):
        if not isinstance(u, dict) or not USER_NAME.match(str(u.get("name", ""))):
            raise ValueError(f"users[{i}] has no valid 'name'")
        role = str(u.get("role", "user"))
        if role not in ROLES:
            raise ValueError(f"users[{i}] ({u['name']}): role {role!r} is not one of {', '.join(ROLES)}")
        profs = u.get("profiles")
        profs = [str(p) for p in profs] if profs else [DEFAULT_PROFILE if role == "admin" else own_profile(u["name"])]
        bad = [p for p in profs if not PROFILE_NAME.match(p)]
        if bad:
            raise ValueError(f"users[{i}] ({u['name']}): profile {bad[0]!r} is not a valid name (like a namespace)")
        user = User(str(u["name"]), role, tuple(profs))
        table.by_name[user.name] = user
        hashes = u.get("token_sha256") or []
        for h in [hashes] if isinstance(hashes, str) else hashes:
            h = str(h).strip().lower()
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                raise ValueError(f"users[{i}] ({u['name']}): token_sha256 is not a sha256 hex digest")
            table.by_hash[h] = user
    proxy = data.get("proxy") or {}
    ph = proxy.get("token_sha256") or []
    table.proxy_hashes = frozenset(str(h).strip().lower() for h in ([ph] if isinstance(ph, str) else ph))
    return table


class Identities:
    """Resolve a request's credentials to a :class:`User` (None: refuse with 401)."""

    def __init__(self, token: str, users_file: str | os.PathLike[str] | None = None):
        self.token = token
        self.path = Path(users_file).expanduser() if users_file else None
        self._stamp: tuple[Any, ...] | None = None
        self._table = _Table()
        if self.path is not None:
            self._reload(strict=True)

    def _reload(self, strict: bool = False) -> None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError as exc:
            if strict:
                raise NbpipeError(f"Cannot read the users file {self.path} ({exc.strerror})",
                                  hint="Fix NBPIPE_USERS_FILE, or unset it for a single-user runner.") from None
            if self._stamp is not None:
                log.error("users file %s is gone: only the runner's own token is accepted now", self.path)
                self._table, self._stamp = _Table(), None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            table = _parse(self.path, self.path.read_text())
        except Exception as exc:  # a half-edited file: keep the previous table, say why
            if strict:
                raise NbpipeError(f"The users file {self.path} is invalid: {exc}") from None
            log.error("users file %s is invalid (%s); keeping the previous users", self.path, exc)
            self._stamp = stamp
            return
        self._table, self._stamp = table, stamp

    def resolve(self, headers: Mapping[str, str], query: Mapping[str, str]) -> User | None:
        given = headers.get("authorization", "").removeprefix("Bearer ").strip() or query.get("token", "")
        if not given:
            return None
        if secrets.compare_digest(given.encode(), self.token.encode()):
            return LOCAL
        if self.path is None:
            return None
        self._reload()
        h = hash_token(given)
        table = self._table
        if h in table.proxy_hashes:
            name = headers.get(USER_HEADER, "").strip()
            if not USER_NAME.match(name):
                return None
            known = table.by_name.get(name)
            if known is not None:
                return known
            return User(name, "user", (own_profile(name),))
        return table.by_hash.get(h)
