"""The ``Store`` plug point: where payloads, artifacts, logs and step results live.

Keys are ``/``-separated strings. Content-addressed objects live under
:func:`content_key` (``sha256/ab/abcd…``), so identical outputs are stored once and a key
says what the bytes are. Every store can describe itself as JSON (:meth:`Store.config`) so a
step process, local or in a pod, opens the same store with :func:`nbpipe.stores.open_store`.

The whole contract (a third-party store registered under the ``nbpipe.stores`` entry points must
keep it; ``tests/test_store_contract.py`` checks it, also against your store: docs/plugins.md):

- **Construction.** ``open_store({"type": NAME, **options})`` calls ``cls(**options)``; ``NAME`` is
  the entry-point name and ``config()`` returns exactly such a dict (JSON only, absolute paths, no
  credentials: it is stored in the runner's database and sent to step pods; secrets come from the
  environment or mounted files of the process that opens the store).
- **Keys.** :func:`check_key` rules (``[A-Za-z0-9_.-]`` segments, no ``.``/``..``, no leading
  ``/``); anything else raises ``ValueError("Invalid store key …")`` before touching storage.
- **Atomic writes.** A key is either absent or holds complete bytes: a reader (another process,
  a crash in between) never sees a partial object. Write to a temporary name and rename, or use
  the backend's atomic put. Re-putting a named key replaces it atomically.
- **Digests.** ``put_*`` return :class:`ObjectInfo` with the sha256 of the bytes written. With
  ``key=None`` the object goes under ``content_key(digest)``, and an existing content key is not
  written again (dedupe). Reads return exactly the bytes written; verifying them against the
  recorded digest (as the S3 store does) is encouraged.
- **Missing objects** raise ``KeyError`` from ``get_bytes``/``get_file``/``size``; ``exists``
  says False; ``delete`` of a missing key is not an error. ``get_file`` leaves no partial ``dest``.
- **Listing.** ``list(prefix)`` yields every key (relative to the store, recursive) that starts
  with ``prefix`` as a *string*: ``list("runs/r1")`` includes ``runs/r10/…``; ``list("runs/r1/")``
  does not. Order is unspecified; ``list("")`` lists everything.
- **Reading in place.** Exactly one of ``local_path(key)`` (a read-only path on this machine) and
  ``url_for(key)`` (a URL a browser or client may GET, presigned for S3) is not ``None``; the
  runner serves artifacts from the first or redirects to the second.
- **Threads.** The runner calls a store from worker threads at once: no shared mutable state
  without a lock.
- **``adopt`` (optional, not in the protocol).** ``adopt(path, key, digest) -> ObjectInfo | None``:
  take a large output file by rename (same filesystem) under ``key``, where ``digest`` is an
  identity of its producer, *not* the bytes' hash (the entrypoint files outputs of 16 MiB or more
  this way under ``sha256/…`` keys named by that identity, so hashing them is skipped). Return
  ``None`` to decline (the entrypoint then hashes and puts the file). Only for stores on a local
  filesystem.
- **``scoped`` (optional, not in the protocol).** ``scoped(prefix) -> Store``: the same objects under
  ``prefix/``, as a store whose ``config()`` names only that prefix (each profile's view: every run
  object of profile P is under ``profiles/P/``, see :mod:`nbpipe.stores.scoped`). Without it the runner
  wraps the store in :class:`~nbpipe.stores.scoped.PrefixedStore` (``{"type": "prefixed", ...}``).
  ``tests/test_store_contract.py`` runs every check on the views too.

Non-goals: metadata (runs, steps: see the runner's database) and caching policy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator, Protocol, runtime_checkable

CHUNK = 1024 * 1024
_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    digest: str  # sha256 hex of the bytes
    size: int


def content_key(digest: str) -> str:
    return f"sha256/{digest[:2]}/{digest}"


def check_key(key: str) -> str:
    """Reject keys that could escape a store's root (``..``, absolute, odd characters)."""
    if not _KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"Invalid store key {key!r}")
    return key


def sha256_file(fh: BinaryIO) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while chunk := fh.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


@runtime_checkable
class Store(Protocol):
    """Object storage used by the runner and by step processes."""

    def config(self) -> dict[str, Any]:
        """JSON that :func:`nbpipe.stores.open_store` turns back into an equal store."""
        ...

    def put_file(self, path: str, key: str | None = None, *, move: bool = False) -> ObjectInfo:
        """Store a file; with ``key=None`` under its content key. ``move`` may consume ``path``."""
        ...

    def put_bytes(self, data: bytes, key: str | None = None) -> ObjectInfo: ...

    def get_bytes(self, key: str) -> bytes: ...

    def get_file(self, key: str, dest: str) -> None:
        """Write the object to the local file ``dest``."""
        ...

    def local_path(self, key: str) -> str | None:
        """A read-only local path to the object, if the store is on this filesystem."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def url_for(self, key: str, expires: int = 3600) -> str | None:
        """A URL a browser may fetch the object from (presigned for S3), or None."""
        ...
