"""What a caller may see: runs, schedules, endpoints and artifacts belong to a profile.

The HTTP middleware (:mod:`.server`) resolves the caller (:mod:`.auth`) and sets it here for the
request; queries add :func:`clauses` (no clause for an admin or for the runner's own work, e.g. a
schedule firing), and :func:`guard` answers 404 for a path naming another profile's object — the
same answer as for one that does not exist, so ids of other teams' runs are not even confirmed.
A submit names its profile with ``X-Nbpipe-Profile`` (or ``?profile=``); default: the caller's first.
Where a profile's step pods run in a cluster (:class:`Placements`: namespace, ServiceAccount, S3
credentials Secret, store prefix) is read here too, from the ``profiles:`` section of the users
file, and :class:`ProfileStores` gives each profile its view of the store (``profiles/<P>/``).
Non-goals: authentication (see :mod:`.auth`).
"""

from __future__ import annotations

import contextvars
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import sqlalchemy as sa

from ..errors import NbpipeError
from . import db
from .auth import DEFAULT_PROFILE, PROFILE_NAME, User

log = logging.getLogger("nbpipe.runner")

PROFILE_HEADER = "x-nbpipe-profile"
_user: contextvars.ContextVar[User | None] = contextvars.ContextVar("nbpipe_user", default=None)
_profile: contextvars.ContextVar[str] = contextvars.ContextVar("nbpipe_profile", default=DEFAULT_PROFILE)
_audit: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("nbpipe_audit", default=None)


def begin(user: User, requested: str | None) -> str:
    """Set the request's caller and submit profile (raises NbpipeError 403-worthy on a foreign profile)."""
    profile = requested or user.default_profile
    if not PROFILE_NAME.match(profile):
        raise NbpipeError(f"{profile[:70]!r} is not a profile name", hint="Profiles are named like namespaces: a-z, 0-9, '-'.")
    if not user.sees(profile):
        raise NbpipeError(f"User {user.name} is not a member of profile {profile!r}",
                          hint=f"Use one of: {', '.join(user.profiles) or '(none)'}.")
    _user.set(user)
    _profile.set(profile)
    _audit.set({})
    return profile


def current() -> User | None:
    return _user.get()


def submit_profile() -> str:
    """The profile a run, schedule or endpoint created by this request belongs to."""
    return _profile.get()


def note(**values: Any) -> None:
    """Add to this request's audit record (e.g. the id of the run it created)."""
    rec = _audit.get()
    if rec is not None:
        rec.update(values)


def noted() -> dict[str, Any]:
    return dict(_audit.get() or {})


def visible() -> tuple[str, ...] | None:
    """The profiles the caller sees; None: all (an admin, or no request: the runner itself)."""
    user = _user.get()
    return None if user is None or user.admin else user.profiles


def clauses(column: Any) -> list[Any]:
    """``WHERE`` clauses limiting ``column`` (a profile column) to the caller's profiles."""
    seen = visible()
    return [] if seen is None else [column.in_(seen)]


def visible_runs() -> Any:
    """A subquery of the run ids the caller sees (for tables keyed by run_id)."""
    return sa.select(db.runs.c.id).where(*clauses(db.runs.c.profile))


def owner(engine: sa.Engine, param: str, value: str, path: str) -> str | None:
    """The profile of the object a path parameter names; None: no such object (or not profile-owned)."""
    from .migrations.m0004_endpoints import endpoints

    if param == "run_id":
        q = sa.select(db.runs.c.profile).where(db.runs.c.id == value)
    elif param == "sid":
        q = sa.select(db.schedules.c.profile).where(db.schedules.c.id == value)
    elif param == "name" and path.startswith("/api/v1/endpoints/"):
        q = sa.select(endpoints.c.profile).where(endpoints.c.name == value)
    else:
        return None
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return row[0] if row else None


def artifact_visible(engine: sa.Engine, digest: str) -> bool:
    """An artifact is visible when a run (or an endpoint version) the caller sees has it."""
    return visible() is None or bool(artifact_profiles(engine, digest)) or package_visible(engine, digest)


def artifact_store(engine: sa.Engine, stores: "ProfileStores", digest: str) -> Any:
    """The view of the store holding object ``digest`` for the caller (``GET /api/v1/artifacts``), or None.

    An admin's (and the embedded runner's single user's) root first, with no query; else the views of
    :func:`artifact_profiles`; the root for the package of a run the caller sees.
    """
    from ..stores.base import content_key

    key = content_key(digest)
    if visible() is None and stores.of(DEFAULT_PROFILE).exists(key):
        return stores.of(DEFAULT_PROFILE)
    owners = artifact_profiles(engine, digest)
    if not owners and package_visible(engine, digest):
        owners = [DEFAULT_PROFILE]
    return stores.holding(owners, key)


def package_visible(engine: sa.Engine, digest: str) -> bool:
    """The package of a run the caller sees (e.g. for ``nbpipe.debug``): uploads stay in the store's root."""
    with engine.connect() as conn:
        return conn.execute(sa.select(db.runs.c.id).where(db.runs.c.package == digest, *clauses(db.runs.c.profile))
                            .limit(1)).first() is not None


def artifact_profiles(engine: sa.Engine, digest: str) -> list[str]:
    """The profiles, among the caller's, with a run or endpoint version that has the object ``digest``.

    An output (the artifacts table), an endpoint's bundle, else an image inside a step's output
    preview (found in the steps' outputs JSON: the slow path, for previews only). The object is in
    those profiles' views of the store (see :class:`ProfileStores`).
    """
    from .migrations.m0004_endpoints import endpoint_versions, endpoints

    seen = visible()
    limit = [] if seen is None else [db.runs.c.profile.in_(seen)]
    with engine.connect() as conn:
        found = [p for (p,) in conn.execute(
            sa.select(db.runs.c.profile).join(db.artifacts, db.runs.c.id == db.artifacts.c.run_id)
            .where(db.artifacts.c.digest == digest, *limit).distinct())]
        found += [p for (p,) in conn.execute(
            sa.select(endpoints.c.profile).join(endpoint_versions, endpoints.c.name == endpoint_versions.c.endpoint)
            .where(endpoint_versions.c.digest == digest,
                   *([] if seen is None else [endpoints.c.profile.in_(seen)])).distinct())]
        if not found and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            row = conn.execute(sa.select(db.runs.c.profile).join(db.steps, db.runs.c.id == db.steps.c.run_id)
                               .where(db.steps.c.outputs.contains(digest), *limit).limit(1)).first()
            found += [row[0]] if row else []
    return [p or DEFAULT_PROFILE for p in dict.fromkeys(found)]


def match_route(app: Any, path: str) -> tuple[str, dict[str, str]] | None:
    """(route template, path parameters) of the OpenAPI path ``path`` falls under, or None.

    From the OpenAPI rather than the router (whose included routers match lazily), so every
    documented route is guarded the same way.
    """
    import re

    compiled = getattr(app.state, "nbpipe_routes", None)
    if compiled is None:
        compiled = [(t, re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(t))))
                    for t in app.openapi().get("paths", {})]
        compiled.sort(key=lambda tr: tr[0].count("{"))  # literal segments win over parameters
        app.state.nbpipe_routes = compiled
    for template, rx in compiled:
        m = rx.fullmatch(path)
        if m:
            return template, m.groupdict()
    return None


def guard(engine: sa.Engine, app: Any, path: str) -> str | None:
    """Why this request must get a 404 (it names another profile's object), or None."""
    seen = visible()
    if seen is None:
        return None
    found = match_route(app, path)
    if found is None:
        return None
    for param, value in found[1].items():
        if param == "digest" and path.startswith("/api/v1/artifacts/"):
            if len(value) == 64 and not artifact_visible(engine, value):
                return f"No artifact {value[:12]}…"
            continue
        prof = owner(engine, param, value, path)
        if prof is not None and prof not in seen:
            kind = {"run_id": "run", "sid": "schedule", "name": "endpoint"}[param]
            return f"No {kind} {value}"
    return None


# -------------------------------------------------------------- placement (Kubernetes executor)
PLACEMENT_KEYS = {"namespace": "namespace", "serviceAccountName": "service_account",
                  "s3CredentialsSecret": "s3_credentials_secret", "storePrefix": "store_prefix"}


@dataclass(frozen=True)
class Placement:
    """Where a profile's step pods go and where its objects live: namespace, ServiceAccount, S3
    credentials Secret, store prefix.

    Read from the ``profiles:`` section of the users file (``NBPIPE_USERS_FILE``), or of
    ``NBPIPE_K8S_PROFILES_FILE`` when set::

        profiles:
          team-a: {namespace: nbpipe-team-a, serviceAccountName: nbpipe-step, s3CredentialsSecret: nbpipe-s3,
                   storePrefix: profiles/team-a}

    Empty ``service_account`` / ``s3_credentials_secret``: the runner's own settings (the same
    names, in the profile's namespace: ``cluster/manifests/profiles/`` creates them there). Empty
    ``namespace``: the runner's. ``store_prefix`` None: :func:`default_prefix`.
    """

    profile: str
    namespace: str = ""
    service_account: str = ""
    s3_credentials_secret: str = ""
    store_prefix: str | None = None


def parse_placements(data: Any, where: str) -> dict[str, Placement]:
    """The ``profiles:`` section of a users/profiles file as ``{profile: Placement}`` (ValueError when wrong)."""
    section = (data or {}).get("profiles") if isinstance(data, dict) else None
    if not section:
        return {}
    if not isinstance(section, dict):
        raise ValueError(f"{where}: 'profiles' must map a profile name to its namespace settings")
    out: dict[str, Placement] = {}
    for name, spec in section.items():
        name = str(name)
        if not PROFILE_NAME.match(name):
            raise ValueError(f"{where}: profile {name!r} is not a valid name (like a namespace)")
        if not isinstance(spec, dict) or not (spec.get("namespace") or "storePrefix" in spec):
            raise ValueError(f"{where}: profile {name!r} needs 'namespace' (or at least 'storePrefix')")
        unknown = set(spec) - set(PLACEMENT_KEYS)
        if unknown:
            raise ValueError(f"{where}: profile {name!r} has unknown key(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(PLACEMENT_KEYS)})")
        values: dict[str, Any] = {PLACEMENT_KEYS[k]: str(v) for k, v in spec.items()}
        if "store_prefix" in values:
            values["store_prefix"] = check_prefix(values["store_prefix"], f"{where}: profile {name!r}: storePrefix")
        for key in ("namespace", "service_account", "s3_credentials_secret"):
            if values.get(key) and not PROFILE_NAME.match(values[key]):
                raise ValueError(f"{where}: profile {name!r}: {key} {values[key]!r} is not a Kubernetes name")
        out[name] = Placement(profile=name, **values)
    return out


class Placements:
    """``profile → Placement`` from a file, re-read when it changes (like the users table).

    A file that stops parsing keeps the previous placements (logged); a missing file at start,
    or an invalid one, is an error then. No file: every profile runs in the runner's namespace.
    """

    def __init__(self, path: str | os.PathLike[str] | None):
        self.path = Path(path).expanduser() if path else None
        self._stamp: tuple[Any, ...] | None = None
        self._table: dict[str, Placement] = {}
        if self.path is not None:
            self._reload(strict=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Placements":
        e = os.environ if env is None else env
        return cls(e.get("NBPIPE_K8S_PROFILES_FILE") or e.get("NBPIPE_USERS_FILE") or None)

    def _reload(self, strict: bool = False) -> None:
        assert self.path is not None
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return
            text = self.path.read_text()
        except OSError as exc:
            if strict:
                raise NbpipeError(f"Cannot read the profiles file {self.path} ({exc.strerror})",
                                  hint="Fix NBPIPE_K8S_PROFILES_FILE / NBPIPE_USERS_FILE.") from None
            log.error("profiles file %s is unreadable (%s); keeping the previous placements", self.path, exc)
            return
        try:
            import yaml

            table = parse_placements(yaml.safe_load(text) or {}, str(self.path))  # YAML reads JSON too
        except Exception as exc:  # noqa: BLE001 - a half-edited file: keep the previous table, say why
            if strict:
                raise NbpipeError(f"The profiles file {self.path} is invalid: {exc}") from None
            log.error("profiles file %s is invalid (%s); keeping the previous placements", self.path, exc)
            self._stamp = stamp
            return
        self._table, self._stamp = table, stamp

    def get(self, profile: str) -> Placement | None:
        if self.path is not None:
            self._reload()
        return self._table.get(profile)

    def namespaces(self) -> set[str]:
        if self.path is not None:
            self._reload()
        return {p.namespace for p in self._table.values() if p.namespace}


# -------------------------------------------------------------- where a profile's objects live (the store)
PROFILES_PREFIX = "profiles"


def default_prefix(profile: str) -> str:
    """``profiles/<profile>``; ``""`` (the store's root, the layout from before profiles) for ``default``."""
    return "" if profile == DEFAULT_PROFILE else f"{PROFILES_PREFIX}/{profile}"


def check_prefix(value: str, where: str) -> str:
    """A store prefix as configured (``""``: the store's root), or ValueError naming ``where``."""
    from ..stores.base import check_key

    value = value.strip().strip("/")
    if value:
        try:
            check_key(value)
        except ValueError:
            raise ValueError(f"{where} {value!r} is not a store key prefix (segments of A-Z a-z 0-9 _ . -)") from None
    return value


class ProfileStores:
    """Each profile's view of the runner's store: every object of a run in profile P (payloads,
    outputs, results, logs, job files) lives under P's prefix, and a step gets only that view's
    config, so its process or pod cannot name another profile's keys.

    ``placements`` (a :class:`Placements`, or None) may set a profile's ``storePrefix``; else
    :func:`default_prefix`. The ``default`` profile keeps the root, so data dirs from before
    profiles keep working. Package payloads arrive in the root (an upload belongs to no profile
    yet) and are copied into a profile's view when its step needs them (:meth:`stage`).
    """

    def __init__(self, root: Any, placements: Placements | None = None):
        self.root = root
        self.placements = placements
        self._views: dict[str, Any] = {}
        self._staged: set[tuple[str, str]] = set()

    def prefix(self, profile: str | None) -> str:
        profile = profile or DEFAULT_PROFILE
        p = self.placements.get(profile) if self.placements is not None else None
        if p is not None and p.store_prefix is not None:
            return p.store_prefix
        return default_prefix(profile)

    def of(self, profile: str | None) -> Any:
        """The store as profile ``profile`` sees it."""
        from ..stores.scoped import scoped

        prefix = self.prefix(profile)
        view = self._views.get(prefix)
        if view is None:
            view = self._views[prefix] = scoped(self.root, prefix)
        return view

    def root_key(self, profile: str | None, key: str) -> str:
        """``key`` of ``profile``'s view as a key of the root store."""
        from ..stores.scoped import join

        return join(self.prefix(profile), key)

    def stage(self, profile: str | None, key: str) -> None:
        """Copy the root's ``key`` (a package payload) into ``profile``'s view, once."""
        prefix = self.prefix(profile)
        if not prefix or (prefix, key) in self._staged:
            return
        view = self.of(profile)
        if not view.exists(key):
            path = self.root.local_path(key)
            if path is not None:
                view.put_file(path, key)
            else:  # streamed through a temporary file: a payload may be hundreds of MiB
                import tempfile

                fd, tmp = tempfile.mkstemp(prefix="nbpipe-stage-")
                os.close(fd)
                try:
                    self.root.get_file(key, tmp)
                    view.put_file(tmp, key, move=True)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
        self._staged.add((prefix, key))

    def holding(self, profiles: Any, key: str) -> Any:
        """The first view among ``profiles``' that has ``key`` (None: none has it)."""
        for profile in dict.fromkeys(profiles):
            view = self.of(profile)
            if view.exists(key):
                return view
        return None
