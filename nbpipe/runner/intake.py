"""Package intake: validate an uploaded package without unpickling it, store its payloads, remember it.

Uploads arrive as files (see ``PUT /api/v1/packages``) and payloads are streamed out of the
zip into the store, so a package that inflates to hundreds of MiB never sits in memory. Runs
in a worker thread, with its own write transaction. Non-goal: building packages (see
:mod:`nbpipe.package`).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..package import scan_package_file
from ..stores.base import content_key
from . import db

if TYPE_CHECKING:
    from .scheduler import Scheduler


def add_package(self: Scheduler, data: bytes) -> dict[str, Any]:
    """Validate a package (without unpickling), store its payloads, remember it."""
    import tempfile

    fd, path = tempfile.mkstemp(dir=upload_dir(self), prefix="package-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return add_package_file(self, path, hashlib.sha256(data).hexdigest())
    finally:
        if os.path.exists(path):
            os.unlink(path)


def upload_dir(self: Scheduler) -> str:
    d = self.data_dir / "uploads"
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def add_package_file(self: Scheduler, path: str, digest: str) -> dict[str, Any]:
    """Like :meth:`add_package` for an uploaded file (consumed): streamed, never held whole in memory."""
    def put_payload(payload_digest: str, tmp: str) -> None:
        if not self.store.exists(content_key(payload_digest)):
            self.store.put_file(tmp, content_key(payload_digest), move=True)

    spec = scan_package_file(path, put_payload, tmp_dir=upload_dir(self))
    size = os.path.getsize(path)
    if not self.store.exists(content_key(digest)):
        self.store.put_file(path, content_key(digest), move=True)
    name = str(spec["pipeline"]["name"])
    with db.write_tx(self.engine) as conn:  # a worker thread: never the loop's transaction
        if conn.execute(sa.select(db.packages.c.digest).where(db.packages.c.digest == digest)).first() is None:
            conn.execute(db.packages.insert().values(digest=digest, name=name, size=size,
                                                     spec=db.dumps(spec), created_at=db.now()))
    return {"digest": digest, "name": name, "size": size, "parameters": list(spec["pipeline"]["parameters"])}
