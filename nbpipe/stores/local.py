"""A store in a local folder: the embedded runner's default.

Writes are atomic (temp file + rename) and content-addressed objects are written once, so
a crash never leaves a half-written artifact under a final key. ``put_file(move=True)`` renames
instead of copying when source and store share a filesystem: a 100 MB hand-off costs a hash,
not a copy. Non-goal: sharing across machines (use the S3 store).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .base import ObjectInfo, check_key, content_key, sha256_file


class LocalStore:
    """Objects as files under ``root``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self._root = str(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".tmp").mkdir(exist_ok=True)

    def config(self) -> dict[str, Any]:
        return {"type": "local", "root": str(self.root)}

    def scoped(self, prefix: str) -> "LocalStore":
        """The subfolder ``prefix`` as a store of its own (see :mod:`nbpipe.stores.scoped`)."""
        return LocalStore(self.root / check_key(prefix))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _tmp(self) -> tuple[int, str]:
        return tempfile.mkstemp(dir=self.root / ".tmp")

    def _install(self, tmp: str, key: str) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest)

    def put_file(self, path: str, key: str | None = None, *, move: bool = False) -> ObjectInfo:
        with open(path, "rb") as fh:
            digest, size = sha256_file(fh)
        key = key or content_key(digest)
        dest = self._path(key)
        if key.startswith("sha256/") and dest.exists():
            if move:
                os.unlink(path)
            return ObjectInfo(key, digest, size)
        if move:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
                os.chmod(dest, 0o600)
                return ObjectInfo(key, digest, size)
            except OSError:
                pass  # another filesystem: fall back to a copy
        fd, tmp = self._tmp()
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            self._install(tmp, key)
        except BaseException:  # e.g. a full disk: never leave a partial copy behind
            _unlink(tmp)
            raise
        if move:
            os.unlink(path)
        return ObjectInfo(key, digest, size)

    def adopt(self, path: str, key: str, digest: str) -> ObjectInfo | None:
        """Take ownership of a local file by renaming it to ``key``, without reading it.

        For large step outputs: the caller names the object by a ``digest`` it derived
        (not the bytes' hash), so a 100 MB hand-off costs a rename. Returns None when the
        file is on another filesystem (then use :meth:`put_file`).
        """
        dest = self._path(key)
        size = os.path.getsize(path)
        if dest.exists():
            os.unlink(path)
            return ObjectInfo(key, digest, size)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, dest)
        except OSError:
            return None
        os.chmod(dest, 0o600)
        return ObjectInfo(key, digest, size)

    def put_bytes(self, data: bytes, key: str | None = None) -> ObjectInfo:
        digest = hashlib.sha256(data).hexdigest()
        key = key or content_key(digest)
        if key.startswith("sha256/") and self._path(key).exists():
            return ObjectInfo(key, digest, len(data))
        fd, tmp = self._tmp()
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            self._install(tmp, key)
        except BaseException:  # e.g. a full disk: never leave a partial file behind
            _unlink(tmp)
            raise
        return ObjectInfo(key, digest, len(data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def get_file(self, key: str, dest: str) -> None:
        src = self._path(key)
        if not src.exists():
            raise KeyError(key)
        shutil.copyfile(src, dest)

    def local_path(self, key: str) -> str | None:
        p = os.path.join(self._root, check_key(key))  # os.path, not pathlib: a cache hit asks per output
        return p if os.path.exists(p) else None

    def exists(self, key: str) -> bool:
        return os.path.exists(os.path.join(self._root, check_key(key)))

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != ".tmp")
            for f in sorted(filenames):
                key = os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/")
                if key.startswith(prefix):
                    yield key

    def url_for(self, key: str, expires: int = 3600) -> str | None:
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
