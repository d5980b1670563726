"""A store in an S3 bucket (MinIO, AWS S3, or any S3-protocol server): the in-cluster default.

Same semantics as :class:`nbpipe.stores.local.LocalStore`: content-addressed objects
(``sha256/ab/abcd…``) are uploaded once, ``put_file`` streams large files as a multipart
upload, and every object carries its sha256 in its metadata (``x-amz-meta-sha256``) so reads
check the bytes they got against the bytes that were written. Credentials come from the
constructor, the environment or a mounted Kubernetes Secret, and never appear in
:meth:`S3Store.config` or ``repr``: the config travels to step pods and into the runner's
database.

Non-goals: bucket administration beyond creating a missing bucket, versioning, lifecycle
rules and server-side encryption (configure them on the bucket), and hiding a slow network
(large artifacts still move by reference, see ``url_for``).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from ..errors import NbpipeError
from .base import CHUNK, ObjectInfo, check_key, content_key, sha256_file
from .s3_light import _CREDENTIAL_HINT, _DENIED
from .s3_light import resolve_credentials as _resolve_credentials

PART_SIZE = 16 * 1024 * 1024
"""Multipart part size: objects larger than this are uploaded in parts (S3 minimum is 5 MiB)."""

DIGEST_META = "sha256"
_DIGEST_HEADER = "x-amz-meta-" + DIGEST_META

_PUBLIC_ENV = "NBPIPE_S3_PUBLIC_ENDPOINT"


class S3StoreError(NbpipeError, OSError):
    """The S3 store cannot do what was asked: server unreachable, access denied, bucket missing."""


class DigestMismatchError(S3StoreError):
    """An object's bytes do not hash to the sha256 recorded when it was written."""


def parse_endpoint(endpoint: str, secure: bool | None) -> tuple[str, bool]:
    """Split ``http://host:port`` or ``host:port`` into ``(host:port, secure)``.

    Parameters
    ----------
    endpoint
        A URL with scheme ``http``/``https`` and no path, or a bare ``host[:port]``.
    secure
        Use TLS. ``None`` means: from the URL scheme, or ``True`` for a bare host (as minio).

    Returns
    -------
    tuple
        The ``host[:port]`` minio expects and the effective ``secure`` flag.
    """
    if "://" not in endpoint:
        return endpoint.rstrip("/"), True if secure is None else secure
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.netloc or url.path.strip("/") or url.query:
        raise S3StoreError(
            f"S3 endpoint {endpoint!r} is not a server address.",
            "nbpipe needs only scheme, host and port; the bucket is a separate setting.",
            "Use e.g. endpoint='http://minio:9000', bucket='nbpipe'.",
        )
    scheme_secure = url.scheme == "https"
    if secure is not None and secure != scheme_secure:
        raise S3StoreError(
            f"S3 endpoint {endpoint!r} says {url.scheme}:// but secure={secure}.",
            hint="Drop secure= or make it match the URL scheme.",
        )
    return url.netloc, scheme_secure


def resolve_credentials(access_key: str | None, secret_key: str | None) -> tuple[str | None, str | None]:
    """Find the access/secret key pair: arguments, env, secret mount, then AWS/MinIO env names.

    Returns ``(None, None)`` when nothing is configured (anonymous access to a public bucket).
    The lookup is the step pods' light client's (:func:`nbpipe.stores.s3_light.resolve_credentials`).
    """
    return _resolve_credentials(access_key, secret_key, S3StoreError)


def _http_client() -> urllib3.PoolManager:
    # minio's default waits 300 s to connect and retries 5 times; a wrong endpoint should
    # fail in about a second with our message, not hang a notebook for minutes.
    retry = urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504))
    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=5.0, read=120.0), retries=retry, maxsize=10)


def _read_digest(headers: Any) -> str | None:
    value = headers.get(_DIGEST_HEADER) if headers is not None else None
    return str(value).lower() if value else None


class S3Store:
    """Objects in ``bucket`` under ``prefix`` on an S3-protocol server.

    Parameters
    ----------
    endpoint
        ``http://host:port``, ``https://host`` or a bare ``host:port``.
    bucket
        Bucket name; created on first use unless ``create_bucket=False``.
    prefix
        Folder inside the bucket, so several deployments may share one bucket.
    secure
        TLS on/off; by default taken from the endpoint's scheme (bare host: TLS).
    region
        Bucket region; ``None`` asks the server once per bucket.
    access_key, secret_key
        Credentials; by default found by :func:`resolve_credentials`. Never part of ``config()``.
    create_bucket
        Create a missing bucket (``True``) or fail with a clear error (``False``).
    public_endpoint
        The address clients outside the cluster reach the same server at (``https://s3.example.org``),
        for :meth:`url_for`: URLs are signed for that host (a SigV4 signature covers the host, so
        rewriting an internal URL afterwards would break it). Default ``NBPIPE_S3_PUBLIC_ENDPOINT``,
        else ``endpoint``; ``"off"``: no presigned URLs (the runner streams objects itself).
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        prefix: str = "",
        secure: bool | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        create_bucket: bool = True,
        public_endpoint: str | None = None,
    ) -> None:
        self.endpoint, self.secure = parse_endpoint(endpoint, secure)
        public = (public_endpoint if public_endpoint is not None else os.environ.get(_PUBLIC_ENV, "")).strip()
        if public and public.lower() != "off":
            parse_endpoint(public, None)  # a wrong value fails here, naming it, not at the first download
        self.public_endpoint = public
        self.bucket = bucket
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.region = region
        access, secret = resolve_credentials(access_key, secret_key)
        self._credentials = (access, secret)
        self._public_client: Minio | None = None
        self._http = _http_client()
        self._client = Minio(
            self.endpoint,
            access_key=access,
            secret_key=secret,
            secure=self.secure,
            region=region,
            http_client=self._http,
        )
        try:
            self._ensure_bucket(create_bucket)
        except BaseException:
            self._http.clear()  # no half-opened store keeps its sockets
            raise

    # -- helpers ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint as a URL (for messages)."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def scoped(self, prefix: str) -> "S3Store":
        """The same bucket and client under ``self.prefix/prefix`` (no request: the bucket was checked).

        Its :meth:`config` names the longer prefix; a pod opening it uses its own credentials
        (a profile's Secret), which the server may limit to that prefix.
        """
        import copy

        view = copy.copy(self)
        view.prefix = f"{self.prefix}/{check_key(prefix)}" if self.prefix else check_key(prefix)
        return view

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn minio/urllib3 failures into :class:`S3StoreError` naming the fix."""
        try:
            yield
        except S3Error as exc:
            if exc.code in _DENIED:
                raise S3StoreError(
                    f"S3 denied access while trying to {action} at {self.url}.",
                    f"The server answered {exc.code}: {exc.message}",
                    _CREDENTIAL_HINT,
                ) from None
            if exc.code == "NoSuchBucket":
                raise S3StoreError(
                    f"Bucket {self.bucket!r} does not exist at {self.url} (while trying to {action}).",
                    hint="Create it (mc mb, or the cloud console) or open the store with create_bucket=True.",
                ) from None
            raise S3StoreError(
                f"S3 refused to {action} at {self.url}.", f"The server answered {exc.code}: {exc.message}"
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise S3StoreError(
                f"Cannot reach the S3 endpoint {self.url} to {action}.",
                f"{type(reason).__name__}: {reason}",
                "Check that the server is running and that the endpoint (host, port, http vs https) "
                "is right; in the cluster, that the MinIO Service exists.",
            ) from None
        except MinioException as exc:  # 5xx after retries, unparsable answers
            raise S3StoreError(
                f"The S3 server at {self.url} failed to {action}.",
                str(exc),
                "Check the server's logs and health; retry once it is healthy.",
            ) from exc

    def _ensure_bucket(self, create: bool) -> None:
        with self._errors(f"open bucket {self.bucket!r}"):
            try:
                if self._client.bucket_exists(self.bucket):
                    return
            except S3Error as exc:
                # credentials limited to a prefix (a profile's, see nbpipe.stores.scoped) may not look at the
                # bucket itself: their first read or write says whether they work (wrong keys are not
                # AccessDenied but InvalidAccessKeyId / SignatureDoesNotMatch, and still fail here)
                if exc.code == "AccessDenied" and self.prefix:
                    return
                raise
            if not create:
                raise S3StoreError(
                    f"Bucket {self.bucket!r} does not exist at {self.url}.",
                    "The store was opened with create_bucket=False.",
                    "Create the bucket (e.g. `mc mb`) or pass create_bucket=True.",
                )
            try:
                self._client.make_bucket(self.bucket, self.region)
            except S3Error as exc:  # another process created it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def _stat(self, key: str) -> Any:
        """``stat_object`` result, or ``None`` if the object is missing."""
        with self._errors(f"look up {key!r}"):
            try:
                return self._client.stat_object(self.bucket, self._name(key))
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                    return None
                raise

    @contextmanager
    def _open(self, key: str) -> Iterator[Any]:
        """A streaming GET response for ``key``; ``KeyError`` if it is missing."""
        with self._errors(f"read {key!r}"):
            try:
                response = self._client.get_object(self.bucket, self._name(key))
            except S3Error as exc:
                if exc.code == "NoSuchKey":
                    raise KeyError(key) from None
                raise
        try:
            with self._errors(f"read {key!r}"):
                yield response
        finally:
            response.close()
            response.release_conn()

    def _expected_digest(self, key: str, headers: Any) -> str | None:
        # Metadata first; a content key names its digest too, so even an object rewritten
        # without metadata by another tool is still checked.
        recorded = _read_digest(headers)
        if recorded:
            return recorded
        if key.startswith("sha256/"):
            return key.rsplit("/", 1)[-1]
        return None

    def _verify(self, key: str, expected: str | None, actual: str) -> None:
        if expected is not None and expected != actual:
            raise DigestMismatchError(
                f"Object {key!r} in s3://{self.bucket}/{self.prefix} is corrupt: "
                f"expected sha256 {expected}, got {actual}.",
                "The bytes on the server changed after nbpipe wrote them (overwritten or damaged).",
                "Delete the object and re-run the step that produced it (disable its cache).",
            )

    # -- Store protocol --------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """JSON for :func:`nbpipe.stores.open_store`; never contains credentials."""
        return {
            "type": "s3",
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "secure": self.secure,
            "region": self.region,
        } | ({"public_endpoint": self.public_endpoint} if self.public_endpoint else {})

    def _put(self, key: str | None, digest: str, size: int, upload: Callable[[str], object]) -> ObjectInfo:
        """Run ``upload(object_name)`` unless a content-addressed copy is already stored."""
        key = key or content_key(digest)
        if not (key.startswith("sha256/") and self.exists(key)):
            with self._errors(f"upload {key!r}"):
                upload(self._name(key))
        return ObjectInfo(key, digest, size)

    def put_file(self, path: str, key: str | None = None, *, move: bool = False) -> ObjectInfo:
        """Upload a file (multipart above :data:`PART_SIZE`); ``move`` deletes ``path`` after."""
        with open(path, "rb") as fh:
            digest, size = sha256_file(fh)
        info = self._put(
            key,
            digest,
            size,
            lambda name: self._client.fput_object(
                self.bucket, name, path, metadata={DIGEST_META: digest}, part_size=PART_SIZE
            ),
        )
        if move:
            os.unlink(path)
        return info

    def put_bytes(self, data: bytes, key: str | None = None) -> ObjectInfo:
        """Upload ``data``; with ``key=None`` under its content key, skipped if already there."""
        digest = hashlib.sha256(data).hexdigest()
        return self._put(
            key,
            digest,
            len(data),
            lambda name: self._client.put_object(
                self.bucket, name, io.BytesIO(data), len(data), metadata={DIGEST_META: digest}
            ),
        )

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes, checked against its recorded sha256."""
        with self._open(key) as response:
            data = bytes(response.read())
            expected = self._expected_digest(key, response.headers)
        self._verify(key, expected, hashlib.sha256(data).hexdigest())
        return data

    def get_file(self, key: str, dest: str) -> None:
        """Download to ``dest`` atomically; a sha256 mismatch leaves ``dest`` untouched."""
        folder = os.path.dirname(os.path.abspath(dest))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nbpipe-", suffix=".part")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, self._open(key) as response:
                for chunk in response.stream(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                expected = self._expected_digest(key, response.headers)
            self._verify(key, expected, h.hexdigest())
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def local_path(self, key: str) -> str | None:
        """Always ``None``: objects are not on this filesystem."""
        return None

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        return self._stat(key) is not None

    def size(self, key: str) -> int:
        """Object size in bytes; ``KeyError`` if missing."""
        info = self._stat(key)
        if info is None:
            raise KeyError(key)
        return int(info.size)

    def delete(self, key: str) -> None:
        """Delete ``key``; a missing key is not an error."""
        with self._errors(f"delete {key!r}"):
            self._client.remove_object(self.bucket, self._name(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys (without the store prefix) that start with ``prefix``, in S3's key order."""
        base = f"{self.prefix}/" if self.prefix else ""
        with self._errors(f"list {prefix!r}"):
            for obj in self._client.list_objects(self.bucket, prefix=base + prefix, recursive=True):
                yield str(obj.object_name)[len(base) :]

    def _signer(self) -> Minio:
        """The client that signs URLs: for the public endpoint when one is set (signing is offline)."""
        if not self.public_endpoint:
            return self._client
        if self._public_client is None:
            host, secure = parse_endpoint(self.public_endpoint, None)
            with self._errors(f"look up the region of bucket {self.bucket!r}"):
                region = self.region or self._client._get_region(self.bucket)  # noqa: SLF001 - cached by minio
            self._public_client = Minio(host, access_key=self._credentials[0], secret_key=self._credentials[1],
                                        secure=secure, region=region, http_client=_http_client())
        return self._public_client

    def url_for(self, key: str, expires: int = 3600) -> str | None:
        """A presigned GET URL valid for ``expires`` seconds (anyone holding it may read).

        Signed for ``public_endpoint`` when one is set (``None`` when it is ``"off"``: the
        caller streams the object instead).
        """
        if self.public_endpoint.lower() == "off":
            return None
        signer = self._signer()
        with self._errors(f"presign {key!r}"):
            return str(signer.presigned_get_object(self.bucket, self._name(key), expires=timedelta(seconds=expires)))
