"""S3Store against a real S3-protocol server: moto's server mode in a separate process.

Covers what only an S3 store has: multipart uploads, digests in object metadata, presigned
URLs, credentials, endpoint parsing and error messages. The behaviour every store shares is
in ``test_store_contract.py``. Non-goal: AWS- or MinIO-specific features (no server binary
for MinIO is installable here; moto speaks the same protocol to the same ``minio`` client).
"""

from __future__ import annotations

import hashlib
import json
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from minio import Minio

from nbpipe.stores import content_key, open_store
from nbpipe.stores.s3 import (
    PART_SIZE,
    DigestMismatchError,
    S3Store,
    S3StoreError,
    parse_endpoint,
    resolve_credentials,
)

ACCESS, SECRET = "nbpipe-test-access", "nbpipe-test-secret-value"
CREDENTIAL_VARS = (
    "NBPIPE_S3_ACCESS_KEY",
    "NBPIPE_S3_SECRET_KEY",
    "NBPIPE_S3_CREDENTIALS_DIR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m moto.server`` on a free loopback port; return it and its URL."""
    port = free_port()
    # stderr to a file, not a pipe: moto logs every request there, and a pipe nobody reads fills up after
    # ~600 requests and then blocks the server mid-request (a long benchmark or suite session hangs)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"moto server exited: {log.read().decode(errors='replace')[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start within 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server this test started (by its own handle, never by name)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """URL of a moto S3 server process private to this test module."""
    proc, url = start_moto()
    yield url
    stop(proc)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials in the environment only, as a step pod gets them."""
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBPIPE_S3_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("NBPIPE_S3_SECRET_KEY", SECRET)


@pytest.fixture
def store(moto_url: str, s3_env: None) -> S3Store:
    """A fresh store: shared bucket, a prefix of its own."""
    return S3Store(moto_url, "nbpipe-test", prefix=f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def raw(moto_url: str) -> Minio:
    """A plain minio client, to look at and damage objects behind the store's back."""
    host, secure = parse_endpoint(moto_url, None)
    return Minio(host, access_key=ACCESS, secret_key=SECRET, secure=secure)


def name(store: S3Store, key: str) -> str:
    """The object name a store key maps to inside the bucket."""
    return f"{store.prefix}/{key}"


def test_multipart_upload_and_verified_download(store: S3Store, raw: Minio, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    size = 2 * PART_SIZE + 1024 * 1024  # three parts: 16 + 16 + 1 MiB
    with open(src, "wb") as fh:
        for i in range(size // (1024 * 1024)):
            fh.write(hashlib.sha256(str(i).encode()).digest() * 32768)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()

    info = store.put_file(str(src))

    assert info.key == content_key(digest) and info.size == size
    stat = raw.stat_object("nbpipe-test", name(store, info.key))
    assert stat.etag.endswith("-3"), f"expected a 3-part multipart upload, etag {stat.etag}"
    assert stat.metadata["x-amz-meta-sha256"] == digest
    dest = tmp_path / "back.bin"
    store.get_file(info.key, str(dest))
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
    assert store.size(info.key) == size


def test_content_addressed_put_skips_upload_of_existing_object(store: S3Store, raw: Minio) -> None:
    data = b"the same model weights"
    first = store.put_bytes(data)
    # Mark the stored object; a second upload would replace it and drop the mark.
    raw.put_object(
        "nbpipe-test",
        name(store, first.key),
        io.BytesIO(data),
        len(data),
        metadata={"sha256": first.digest, "mark": "first-upload"},
    )

    again = store.put_bytes(data)

    assert again == first
    stat = raw.stat_object("nbpipe-test", name(store, first.key))
    assert stat.metadata["x-amz-meta-mark"] == "first-upload"


def test_named_key_is_overwritten(store: S3Store) -> None:
    store.put_bytes(b"v1", "runs/r1/result")
    store.put_bytes(b"v2", "runs/r1/result")
    assert store.get_bytes("runs/r1/result") == b"v2"


def test_corrupted_object_is_detected(store: S3Store, raw: Minio, tmp_path: Path) -> None:
    info = store.put_bytes(b"accuracy=0.97", "runs/r1/metrics")
    bad = b"accuracy=0.10"
    # Keep the recorded digest, change the bytes: what silent damage looks like.
    raw.put_object(
        "nbpipe-test", name(store, info.key), io.BytesIO(bad), len(bad), metadata={"sha256": info.digest}
    )
    actual = hashlib.sha256(bad).hexdigest()

    with pytest.raises(DigestMismatchError) as exc:
        store.get_bytes(info.key)
    message = str(exc.value)
    assert "runs/r1/metrics" in message and info.digest in message and actual in message
    dest = tmp_path / "metrics"
    with pytest.raises(DigestMismatchError):
        store.get_file(info.key, str(dest))
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_content_key_checked_even_without_metadata(store: S3Store, raw: Minio) -> None:
    info = store.put_bytes(b"features")
    raw.put_object("nbpipe-test", name(store, info.key), io.BytesIO(b"feature5"), 8)
    with pytest.raises(DigestMismatchError, match=info.digest):
        store.get_bytes(info.key)


def test_presigned_url_serves_the_object(store: S3Store) -> None:
    info = store.put_bytes(b"<html>report</html>", "runs/r1/report.html")
    url = store.url_for(info.key, expires=120)
    assert url is not None and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"<html>report</html>"


def test_config_reopens_same_store_without_secrets(store: S3Store, moto_url: str) -> None:
    info = store.put_bytes(b"payload")
    config = store.config()

    assert config == {
        "type": "s3",
        "endpoint": moto_url.removeprefix("http://"),
        "bucket": "nbpipe-test",
        "prefix": store.prefix,
        "secure": False,
        "region": None,
    }
    text = repr(config) + repr(store)
    assert ACCESS not in text and SECRET not in text
    again = open_store(config)
    assert isinstance(again, S3Store) and again.config() == config
    assert again.get_bytes(info.key) == b"payload"


def test_prefixes_isolate_stores_in_one_bucket(moto_url: str, s3_env: None) -> None:
    a = S3Store(moto_url, "nbpipe-test", prefix="team-a/prod")
    b = S3Store(moto_url, "nbpipe-test", prefix="team-a/prod2")
    a.put_bytes(b"a", "x/one")
    b.put_bytes(b"b", "x/two")
    assert list(a.list("x/")) == ["x/one"]
    assert list(b.list()) == ["x/two"]


def test_unreachable_endpoint_fails_fast_and_says_what_to_check(s3_env: None) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(S3StoreError) as exc:
        S3Store(url, "nbpipe")
    assert time.monotonic() - started < 10
    message = str(exc.value)
    assert f"Cannot reach the S3 endpoint {url}" in message and "endpoint" in message.split(".", 1)[1]


def test_missing_bucket_without_create(moto_url: str, s3_env: None) -> None:
    with pytest.raises(S3StoreError, match="Bucket 'never-made' does not exist.*create_bucket=True"):
        S3Store(moto_url, "never-made", create_bucket=False)
    S3Store(moto_url, "made-now")  # default: created
    S3Store(moto_url, "made-now", create_bucket=False)


def test_wrong_credentials_give_access_denied_with_hint(tmp_path: Path) -> None:
    # moto checks signatures only with IAM auth on; this server starts with it on.
    proc, url = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        with pytest.raises(S3StoreError) as exc:
            S3Store(url, "nbpipe", access_key="AKIANOTAREALKEY00000", secret_key="s3cr3t-not-for-logs")
    finally:
        stop(proc)
    message = str(exc.value)
    assert "denied access" in message and "NBPIPE_S3_ACCESS_KEY" in message
    assert "s3cr3t-not-for-logs" not in message


@pytest.mark.parametrize(
    ("endpoint", "secure", "expected"),
    [
        ("http://127.0.0.1:9000", None, ("127.0.0.1:9000", False)),
        ("https://s3.example.org", None, ("s3.example.org", True)),
        ("minio.nbpipe.svc:9000", None, ("minio.nbpipe.svc:9000", True)),
        ("minio.nbpipe.svc:9000", False, ("minio.nbpipe.svc:9000", False)),
        ("http://minio:9000/", None, ("minio:9000", False)),
    ],
)
def test_parse_endpoint(endpoint: str, secure: bool | None, expected: tuple[str, bool]) -> None:
    assert parse_endpoint(endpoint, secure) == expected


@pytest.mark.parametrize(
    ("endpoint", "secure", "match"),
    [
        ("http://minio:9000/nbpipe", None, "not a server address"),
        ("ftp://minio:9000", None, "not a server address"),
        ("https://minio:9000", False, "secure=False"),
    ],
)
def test_parse_endpoint_rejects(endpoint: str, secure: bool | None, match: str) -> None:
    with pytest.raises(S3StoreError, match=match):
        parse_endpoint(endpoint, secure)


def test_credentials_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    assert resolve_credentials(None, None) == (None, None)
    monkeypatch.setenv("MINIO_ROOT_USER", "minio-user")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "minio-pass")
    assert resolve_credentials(None, None) == ("minio-user", "minio-pass")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    assert resolve_credentials(None, None) == ("aws-id", "aws-secret")
    (tmp_path / "access-key").write_text("mounted-id\n")
    (tmp_path / "secret-key").write_text("mounted-secret\n")
    monkeypatch.setenv("NBPIPE_S3_CREDENTIALS_DIR", str(tmp_path))
    assert resolve_credentials(None, None) == ("mounted-id", "mounted-secret")
    monkeypatch.setenv("NBPIPE_S3_ACCESS_KEY", "nb-id")
    monkeypatch.setenv("NBPIPE_S3_SECRET_KEY", "nb-secret")
    assert resolve_credentials(None, None) == ("nb-id", "nb-secret")
    assert resolve_credentials("arg-id", "arg-secret") == ("arg-id", "arg-secret")
    with pytest.raises(S3StoreError, match="Pass both"):
        resolve_credentials("arg-id", None)
    (tmp_path / "secret-key").unlink()
    with pytest.raises(S3StoreError, match="secret-key"):
        resolve_credentials(None, None)


# -- a profile's view and a profile's credentials (issue 16: an S3 prefix per profile) -------------
PROFILE_POLICIES = Path(__file__).resolve().parent.parent / "cluster" / "manifests" / "profiles"


def test_a_profiles_view_is_a_prefix_a_step_opens_from_its_config_alone(moto_url: str, s3_env: None) -> None:
    """Key level: a view's config names only its prefix; nothing in it can address another profile's keys."""
    from nbpipe.runner.profiles import ProfileStores

    root = S3Store(moto_url, "nbpipe-test", prefix=f"r-{uuid.uuid4().hex[:8]}")
    stores = ProfileStores(root)
    a, b = stores.of("team-a"), stores.of("team-b")
    assert stores.of("default") is root  # the layout from before profiles
    secret = b.put_bytes(b"team-b only", "runs/r1/s/1/result.json")
    assert root.get_bytes("profiles/team-b/runs/r1/s/1/result.json") == b"team-b only"
    pod = open_store(a.config())  # what a team-a step opens: its job's store config
    assert pod.config()["prefix"] == f"{root.prefix}/profiles/team-a" and "access_key" not in json.dumps(pod.config())
    assert not pod.exists(secret.key) and list(pod.list("")) == []
    for escape in ("../team-b/runs/r1/s/1/result.json", "/profiles/team-b/runs/r1/s/1/result.json"):
        with pytest.raises(ValueError, match="Invalid store key"):
            pod.get_bytes(escape)
    pod.put_bytes(b"team-a's", "runs/r2/s/1/result.json")
    assert list(b.list("")) == ["runs/r1/s/1/result.json"] and a.get_bytes("runs/r2/s/1/result.json") == b"team-a's"
    # a package payload uploaded to the root is staged into a view once, content-addressed there too
    payload = root.put_bytes(b"pickled component")
    stores.stage("team-a", payload.key)
    assert pod.get_bytes(payload.key) == b"pickled component" and not b.exists(payload.key)


def test_a_profiles_credentials_reach_only_its_prefix_under_the_shipped_policy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Server level: moto with IAM on enforces cluster/manifests/profiles/<p>/s3-policy.json per object.

    moto evaluates the object statements (Get/Put/Delete by resource ARN) but not the ``s3:prefix``
    condition of ListBucket, so listing another prefix is refused only by MinIO/AWS, which do.
    """
    import boto3

    from nbpipe.runner.profiles import ProfileStores

    proc, url = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "9"})  # the 9 IAM calls below, then IAM is on
    try:
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        keys = {}
        for user in ("runner", "team-a", "team-b"):
            iam.create_user(UserName=user)
            k = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = {"access_key": k["AccessKeyId"], "secret_key": k["SecretAccessKey"]}
            policy = (PROFILE_POLICIES / user / "s3-policy.json").read_text() if user != "runner" else json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
            iam.put_user_policy(UserName=user, PolicyName="nbpipe", PolicyDocument=policy)
        root = S3Store(url, "nbpipe", region="us-east-1", **keys["runner"])  # the runner: the whole bucket
        stores = ProfileStores(root)
        b_obj = stores.of("team-b").put_bytes(b"team-b's model", "runs/rb/train/1/result.json")
        stores.of("team-a").put_bytes(b"team-a's model", "runs/ra/train/1/result.json")

        def pod(profile: str, creds: str) -> S3Store:  # a step pod: its view's config + its profile's Secret
            return S3Store(**{k: v for k, v in stores.of(profile).config().items() if k != "type"}, **keys[creds])

        a = pod("team-a", "team-a")
        assert a.get_bytes("runs/ra/train/1/result.json") == b"team-a's model"
        a.put_file(str(_write(tmp_path / "out.bin", b"new output")))  # content-addressed, under its prefix
        assert list(a.list("runs/")) == ["runs/ra/train/1/result.json"]
        stolen = pod("team-b", "team-a")  # team-a's credentials pointed at team-b's prefix
        with pytest.raises(S3StoreError, match="denied access"):
            stolen.get_bytes(b_obj.key)
        with pytest.raises(S3StoreError, match="denied access"):
            stolen.put_bytes(b"overwritten", b_obj.key)
        with pytest.raises(S3StoreError, match="denied access"):
            S3Store(url, "nbpipe", region="us-east-1", **keys["team-a"]).get_bytes("profiles/team-b/" + b_obj.key)
        assert pod("team-b", "team-b").get_bytes(b_obj.key) == b"team-b's model"  # untouched, still its owner's
        # the same through what a step pod really opens (entry.open_store: the light S3 client), with the
        # profile's Secret in its environment
        from nbpipe.executors.entry import open_store as step_store

        for name in CREDENTIAL_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NBPIPE_S3_ACCESS_KEY", keys["team-a"]["access_key"])
        monkeypatch.setenv("NBPIPE_S3_SECRET_KEY", keys["team-a"]["secret_key"])
        light = step_store(stores.of("team-a").config())
        assert type(light).__name__ == "LightS3Store"
        assert light.get_bytes("runs/ra/train/1/result.json") == b"team-a's model"
        light.put_bytes(b"log", "runs/ra/train/1/log.txt")
        with pytest.raises(OSError, match="denied access"):
            step_store(stores.of("team-b").config()).get_bytes(b_obj.key)
    finally:
        stop(proc)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
