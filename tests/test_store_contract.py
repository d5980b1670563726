"""The Store contract: the same checks run against LocalStore and S3Store.

Every store must behave the same to the runner and the step entrypoint: keys, content
addressing, dedupe, KeyError for missing objects, listing, config round trips. S3Store runs
against a real moto server process (started by ``test_store_s3.moto_url``); a third-party store
too, with ``NBPIPE_TEST_STORE`` (see ``docs/plugins.md``). Non-goal:
store-specific features (multipart, presigned URLs, atomic renames: see the store's own tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
import uuid
from pathlib import Path

import pytest

from nbpipe.stores import Store, content_key, open_store
from nbpipe.stores.local import LocalStore
from nbpipe.stores.s3 import S3Store
from nbpipe.stores.scoped import PrefixedStore, scoped
from test_store_s3 import moto_url, s3_env  # noqa: F401  (fixtures: the server and its credentials)


# A third-party store: NBPIPE_TEST_STORE='{"type": "mystore", "root": "{tmp}/s", ...}' (its config as
# JSON; "{tmp}" in a value becomes a fresh folder per test, so each test gets an empty store).
THIRD_PARTY = os.environ.get("NBPIPE_TEST_STORE", "")


@pytest.fixture(params=["local", "s3", "local-scoped", "s3-scoped", "prefixed"]
                + (["plugin", "plugin-scoped"] if THIRD_PARTY else []))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each store type, empty; and each seen from a profile's prefix (``scoped``), which must behave the same."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    if request.param == "local-scoped":
        parent = LocalStore(tmp_path / "store")
        parent.put_bytes(b"another profile's", "runs/r1/a")  # the parent's keys never show in the view
        return scoped(parent, "profiles/team-a")
    if request.param == "prefixed":  # the generic view, as for a third-party store
        parent = LocalStore(tmp_path / "store")
        parent.put_bytes(b"another profile's", "runs/r1/a")
        return PrefixedStore(parent, "profiles/team-a")
    if request.param.startswith("plugin"):
        config = {k: v.replace("{tmp}", str(tmp_path / "plugin-store")) if isinstance(v, str) else v
                  for k, v in json.loads(THIRD_PARTY).items()}
        plugin = open_store(config)
        return scoped(plugin, "profiles/team-a") if request.param == "plugin-scoped" else plugin
    request.getfixturevalue("s3_env")
    url = request.getfixturevalue("moto_url")
    s3 = S3Store(url, "nbpipe-contract", prefix=f"c-{uuid.uuid4().hex[:10]}")
    if request.param == "s3-scoped":
        s3.put_bytes(b"another profile's", "runs/r1/a")
        return scoped(s3, "profiles/team-a")
    return s3


def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


def test_bytes_round_trip_under_a_named_key(store: Store) -> None:
    info = store.put_bytes(b"\x00\x01binary\xff", "runs/r1/steps/train/out")
    assert info.key == "runs/r1/steps/train/out"
    assert info.digest == hashlib.sha256(b"\x00\x01binary\xff").hexdigest() and info.size == 9
    assert store.get_bytes(info.key) == b"\x00\x01binary\xff"
    assert store.exists(info.key) and store.size(info.key) == 9


def test_content_addressing_and_dedupe(store: Store) -> None:
    first = store.put_bytes(b"same bytes")
    second = store.put_bytes(b"same bytes")
    digest = hashlib.sha256(b"same bytes").hexdigest()
    assert first == second
    assert first.key == content_key(digest) == f"sha256/{digest[:2]}/{digest}"
    assert list(store.list("sha256/")) == [first.key]


def test_file_round_trip_and_move(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights" * 1000)
    info = store.put_file(str(src))
    assert src.exists(), "put_file without move must leave the source"
    assert info.key == content_key(hashlib.sha256(src.read_bytes()).hexdigest())

    dest = tmp_path / "copy.bin"
    store.get_file(info.key, str(dest))
    assert dest.read_bytes() == src.read_bytes()

    moved = store.put_file(str(src), "runs/r1/model.bin", move=True)
    assert not src.exists(), "move=True consumes the source"
    assert store.get_bytes(moved.key) == b"weights" * 1000


def test_move_of_existing_content_consumes_source(store: Store, tmp_path: Path) -> None:
    store.put_bytes(b"cached")
    src = tmp_path / "again"
    src.write_bytes(b"cached")
    store.put_file(str(src), move=True)
    assert not src.exists()


def test_missing_keys_raise_keyerror(store: Store, tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        store.get_bytes("runs/none")
    with pytest.raises(KeyError):
        store.get_file("runs/none", str(tmp_path / "out"))
    with pytest.raises(KeyError):
        store.size("runs/none")
    assert not store.exists("runs/none")
    assert not (tmp_path / "out").exists()


def test_delete_is_idempotent(store: Store) -> None:
    store.put_bytes(b"x", "logs/a.txt")
    store.delete("logs/a.txt")
    assert not store.exists("logs/a.txt")
    store.delete("logs/a.txt")


def test_list_by_prefix(store: Store) -> None:
    for key in ["runs/r1/a", "runs/r1/b/c", "runs/r10/a", "logs/x"]:
        store.put_bytes(key.encode(), key)
    assert sorted(store.list()) == ["logs/x", "runs/r1/a", "runs/r1/b/c", "runs/r10/a"]
    assert sorted(store.list("runs/r1/")) == ["runs/r1/a", "runs/r1/b/c"]
    assert sorted(store.list("runs/r1")) == ["runs/r1/a", "runs/r1/b/c", "runs/r10/a"]
    assert list(store.list("nothing/")) == []


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "a b", ""])
def test_bad_keys_are_rejected(store: Store, key: str) -> None:
    with pytest.raises(ValueError, match="Invalid store key"):
        store.get_bytes(key)
    if key:  # an empty key means "content key" to put_bytes
        with pytest.raises(ValueError, match="Invalid store key"):
            store.put_bytes(b"x", key)


def test_config_round_trip(store: Store) -> None:
    info = store.put_bytes(b"shared with a step process", "runs/r1/in")
    config = store.config()
    again = open_store(config)
    assert type(again) is type(store)
    assert again.config() == config
    assert again.get_bytes(info.key) == b"shared with a step process"


def test_local_path_and_url_either_serve_the_bytes_or_are_none(store: Store) -> None:
    info = store.put_bytes(b"preview me", "runs/r1/preview.txt")
    path = store.local_path(info.key)
    if path is not None:
        assert Path(path).read_bytes() == b"preview me"
    url = store.url_for(info.key)
    if url is not None:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"preview me"
    assert (path is None) != (url is None), "each store offers exactly one way to read in place"
