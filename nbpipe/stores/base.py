"""The ``Store`` plug point: where payloads, artifacts, logs and step results live.

Keys are ``/``-separated strings. Content-addressed objects live under
:func:`content_key` (``sha256/ab/abcd…``), so identical outputs are stored once and a key
says what the bytes are. Every store can describe itself as JSON (:meth:`Store.config`) so a
step process, local or in a pod, opens the same store with :func:`nbpipe.stores.open_store`.

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
