"""A view of a store under a key prefix: a profile's objects live under ``profiles/<profile>/``.

``scoped(store, "profiles/team-a")`` is a store whose key ``k`` is the parent's key
``profiles/team-a/k``, and whose :meth:`config` names only that prefix: a step process or pod
opened from it cannot even address a key outside it (``..`` is not a valid key). The built-in
stores narrow themselves (a local store's root becomes the subfolder; an S3 store's ``prefix``
grows, its credentials are the ones of the process that opens the config); any other store is
wrapped in :class:`PrefixedStore` (store type ``prefixed``).

Invariant: for every operation, ``scoped(s, p).op(k)`` is ``s.op(p + "/" + k)``, so a key the
runner records for another reader (e.g. an endpoint's bundle) can be made parent-relative with
:func:`join`. Non-goal: enforcing the boundary on the server: that is the credentials' job
(an IAM/MinIO policy limited to the prefix, see ``cluster/manifests/profiles/``).
"""

from __future__ import annotations

from typing import Any, Iterator

from .base import ObjectInfo, Store, check_key


def join(prefix: str, key: str) -> str:
    """``prefix/key`` (just ``key`` for an empty prefix)."""
    return f"{prefix}/{key}" if prefix else key


def scoped(store: Store, prefix: str) -> Store:
    """``store`` seen from ``prefix`` (``""``: the store itself)."""
    prefix = prefix.strip("/")
    if not prefix:
        return store
    check_key(prefix)
    narrow = getattr(store, "scoped", None)
    if callable(narrow):
        return narrow(prefix)  # type: ignore[no-any-return]
    return PrefixedStore(store, prefix)


class PrefixedStore:
    """Any store's objects under ``prefix`` (for stores that cannot narrow themselves)."""

    def __init__(self, store: Any, prefix: str):
        if isinstance(store, dict):  # from config(): the parent's own config
            from . import open_store

            store = open_store(store)
        self.inner = store
        self.prefix = check_key(prefix.strip("/"))

    def __repr__(self) -> str:
        return f"PrefixedStore({self.inner!r}, {self.prefix!r})"

    def scoped(self, prefix: str) -> "PrefixedStore":
        return PrefixedStore(self.inner, join(self.prefix, check_key(prefix)))

    def _k(self, key: str) -> str:
        return join(self.prefix, check_key(key))

    def _info(self, info: ObjectInfo) -> ObjectInfo:
        return ObjectInfo(info.key[len(self.prefix) + 1:], info.digest, info.size)

    def config(self) -> dict[str, Any]:
        return {"type": "prefixed", "store": self.inner.config(), "prefix": self.prefix}

    def put_file(self, path: str, key: str | None = None, *, move: bool = False) -> ObjectInfo:
        if key is None:  # content-addressed: hash here so the key lands under the prefix
            from .base import content_key, sha256_file

            with open(path, "rb") as fh:
                digest, _ = sha256_file(fh)
            key = content_key(digest)
        return self._info(self.inner.put_file(path, self._k(key), move=move))

    def put_bytes(self, data: bytes, key: str | None = None) -> ObjectInfo:
        if key is None:
            import hashlib

            from .base import content_key

            key = content_key(hashlib.sha256(data).hexdigest())
        return self._info(self.inner.put_bytes(data, self._k(key)))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.inner.get_bytes(self._k(key))
        except KeyError:
            raise KeyError(key) from None

    def get_file(self, key: str, dest: str) -> None:
        try:
            self.inner.get_file(self._k(key), dest)
        except KeyError:
            raise KeyError(key) from None

    def local_path(self, key: str) -> str | None:
        return self.inner.local_path(self._k(key))

    def exists(self, key: str) -> bool:
        return bool(self.inner.exists(self._k(key)))

    def size(self, key: str) -> int:
        try:
            return int(self.inner.size(self._k(key)))
        except KeyError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        self.inner.delete(self._k(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        cut = len(self.prefix) + 1
        for key in self.inner.list(self.prefix + "/" + prefix):
            yield key[cut:]

    def url_for(self, key: str, expires: int = 3600) -> str | None:
        return self.inner.url_for(self._k(key), expires)
