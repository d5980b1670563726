"""A small S3 client for step pods: get and put objects with SigV4 over one keep-alive HTTP/1.1 socket.

Importing ``minio`` (with ``urllib3``, its crypto and XML models) costs a step pod ~150-250 ms,
more than the whole pod floor; a step only reads its payload and inputs and writes its outputs,
result and log. :class:`LightS3Store` does exactly that, on the same bucket layout as
:class:`nbpipe.stores.s3.S3Store` (``prefix/key``, content keys, the ``x-amz-meta-sha256``
digest every object carries and every read checks). Everything else (listing, deleting,
presigning, multipart uploads of files above :data:`SINGLE_PUT_MAX`) goes to a full
``S3Store`` opened on first use, so the store contract holds either way.

The step entrypoint opens it for ``{"type": "s3", ...}`` configs (``NBPIPE_S3_LIGHT=0`` opts out);
:func:`resolve_credentials` keeps ``S3Store``'s order (arguments, ``NBPIPE_S3_*``, the mounted
Secret in ``NBPIPE_S3_CREDENTIALS_DIR``, ``AWS_*``, ``MINIO_ROOT_*``).

Non-goals: anything but path-style requests to one endpoint, bucket creation (the runner's store
made the bucket), and session tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from typing import Any, Callable

from ..errors import NbpipeError
from .base import CHUNK, ObjectInfo, check_key, content_key

DIGEST_HEADER = "x-amz-meta-sha256"
SINGLE_PUT_MAX = 64 * 1024 * 1024  # larger files go through S3Store's multipart upload
PUT_WITHOUT_LOOKUP = 1024 * 1024  # content objects smaller than this are put again rather than looked up first
OPTIONS = frozenset({"endpoint", "bucket", "prefix", "secure", "region", "access_key", "secret_key",
                     "create_bucket", "public_endpoint"})
_ENV_PAIRS = (("NBPIPE_S3_ACCESS_KEY", "NBPIPE_S3_SECRET_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
              ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"))
_CREDENTIALS_DIR = "NBPIPE_S3_CREDENTIALS_DIR"
_CREDENTIAL_HINT = (
    "Set NBPIPE_S3_ACCESS_KEY and NBPIPE_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), "
    "or mount a Secret with files 'access-key' and 'secret-key' and point NBPIPE_S3_CREDENTIALS_DIR at it."
)
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
_RETRY_STATUS = {500, 502, 503, 504}
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class LightS3Error(NbpipeError, OSError):
    """The S3 server refused or could not be reached (same wording as ``S3StoreError``)."""


class LightDigestMismatch(LightS3Error):
    """An object's bytes do not hash to the sha256 recorded when it was written."""


def resolve_credentials(access_key: str | None, secret_key: str | None,
                        error: type[NbpipeError] = LightS3Error) -> tuple[str | None, str | None]:
    """Find the access/secret key pair: arguments, env, secret mount, then AWS/MinIO env names.

    Returns ``(None, None)`` when nothing is configured (anonymous access to a public bucket).
    ``S3Store`` uses the same lookup (with its own ``error`` class), so both clients of one pod
    always agree on the credentials.
    """
    if access_key or secret_key:
        if not (access_key and secret_key):
            raise error("Only one of access_key/secret_key was given.", hint="Pass both or neither.")
        return access_key, secret_key
    pairs = [(os.environ.get(a), os.environ.get(s)) for a, s in _ENV_PAIRS]
    folder = os.environ.get(_CREDENTIALS_DIR)
    if folder:
        files = [os.path.join(folder, "access-key"), os.path.join(folder, "secret-key")]
        if not all(os.path.isfile(f) for f in files):
            raise error(f"{_CREDENTIALS_DIR}={folder} lacks the files 'access-key' and 'secret-key'.",
                        hint="Mount a Secret with those two keys there, or unset the variable.")
        pairs.insert(1, (_read_text(files[0]), _read_text(files[1])))
    for access, secret in pairs:
        if access and secret:
            return access, secret
    return None, None


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def _host_secure(endpoint: str, secure: bool | None) -> tuple[str, bool]:
    if "://" not in endpoint:
        return endpoint.rstrip("/"), True if secure is None else bool(secure)
    scheme, _, rest = endpoint.partition("://")
    return rest.split("/", 1)[0], scheme.lower() == "https" if secure is None else bool(secure)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(method: str, host: str, path: str, query: dict[str, str], headers: dict[str, str], payload_sha256: str,
         access_key: str, secret_key: str, region: str, now: float | None = None) -> dict[str, str]:
    """``headers`` plus the SigV4 ``Authorization``, ``x-amz-date`` and ``x-amz-content-sha256`` of a request.

    ``path`` is the already encoded path (``/bucket/key``); all ``x-amz-*`` headers are signed.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    day = stamp[:8]
    out = dict(headers)
    out["x-amz-date"] = stamp
    out["x-amz-content-sha256"] = payload_sha256
    signed = {"host": host, **{k.lower(): str(v).strip() for k, v in out.items() if k.lower().startswith("x-amz-")}}
    names = sorted(signed)
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(query.items()))  # (plain names and values only)
    canonical = "\n".join([method, path, canonical_query, *(f"{n}:{signed[n]}" for n in names), "",
                           ";".join(names), payload_sha256])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
                            f"Signature={signature}")
    return out


class _Response:
    """An HTTP/1.1 answer whose body is read on demand (Content-Length, chunked, or none)."""

    def __init__(self, reader: Any, method: str):
        line = reader.readline(65537)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {line[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        while (h := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
            k, _, v = h.decode("latin-1").partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self._reader = reader
        self.reusable = self.headers.get("connection", "").lower() != "close"
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._chunk = 0  # bytes left in the current chunk
        self._done = False
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._left: int | None = 0
        elif self._chunked:
            self._left = None
        elif "content-length" in self.headers:
            self._left = int(self.headers["content-length"])
        else:  # body until the server closes
            self._left, self.reusable = None, False

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if self._chunked:
            return self._read_chunked(n)
        if self._left is None:
            data = self._reader.read() if n < 0 else self._reader.read(n)
            self._done = not data
            return data  # type: ignore[no-any-return]
        want = self._left if n < 0 else min(n, self._left)
        data = self._reader.read(want)
        if len(data) < want:
            raise OSError("the S3 server closed the connection in the middle of an answer")
        self._left -= len(data)
        self._done = self._left == 0
        return data  # type: ignore[no-any-return]

    def _read_chunked(self, n: int) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            if self._chunk == 0:
                size = int(self._reader.readline(1024).split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while self._reader.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    break
                self._chunk = size
            piece = self._reader.read(self._chunk if n < 0 else min(self._chunk, n - len(out)))
            if not piece:
                raise OSError("the S3 server closed the connection in the middle of an answer")
            out += piece
            self._chunk -= len(piece)
            if self._chunk == 0:
                self._reader.readline(1024)  # the CRLF after a chunk
        return bytes(out)

    def finish(self) -> None:
        """Read what is left of the body (so the connection can carry the next request)."""
        while self.read(CHUNK):
            pass


class _Connection:
    """One keep-alive HTTP/1.1 connection (``http.client`` and its ``email`` parsing cost a pod ~30 ms)."""

    def __init__(self, hostport: str, secure: bool, timeout: float = 120.0):
        import socket

        host, _, port = hostport.rpartition(":") if hostport.rpartition(":")[2].isdigit() else (hostport, "", "")
        host = host.strip("[]")
        self.host = hostport
        sock = socket.create_connection((host, int(port) if port else (443 if secure else 80)), timeout=5.0)
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.broken = False

    def request(self, method: str, target: str, headers: dict[str, str], body: Any) -> _Response:
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body is not None and "Content-Length" not in headers:
            headers = {**headers, "Content-Length": str(len(body))}
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        if isinstance(body, (bytes, bytearray)):
            self.sock.sendall(head.encode("latin-1") + body)
        else:
            self.sock.sendall(head.encode("latin-1"))
            if body is not None:
                while chunk := body.read(CHUNK):
                    self.sock.sendall(chunk)
        resp = _Response(self.reader, method)
        self.broken = not resp.reusable
        return resp

    def close(self) -> None:
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass


def _xml_field(body: bytes, tag: str) -> str:
    text = body.decode("utf-8", "replace")
    start = text.find(f"<{tag}>")
    end = text.find(f"</{tag}>", start)
    return text[start + len(tag) + 2:end].strip() if start >= 0 and end > start else ""


class LightS3Store:
    """Objects in ``bucket`` under ``prefix``: the reads and writes of a step (see the module docstring).

    Takes :class:`nbpipe.stores.s3.S3Store`'s options; ``create_bucket`` and ``public_endpoint``
    only matter to the full store the rarer methods are delegated to.
    """

    def __init__(self, endpoint: str, bucket: str, prefix: str = "", secure: bool | None = None,
                 region: str | None = None, access_key: str | None = None, secret_key: str | None = None,
                 create_bucket: bool = True, public_endpoint: str | None = None) -> None:
        self._options = {"endpoint": endpoint, "bucket": bucket, "prefix": prefix, "secure": secure, "region": region,
                         "access_key": access_key, "secret_key": secret_key, "create_bucket": create_bucket,
                         "public_endpoint": public_endpoint}
        self.endpoint, self.secure = _host_secure(endpoint, secure)
        self.bucket = bucket
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.region = region  # as configured (config() says it as given)
        self._signing_region = region
        self._access, self._secret = resolve_credentials(access_key, secret_key)
        self._conn: Any = None
        self._lock = threading.Lock()  # one request at a time on the one connection
        self._full: Any = None
        self.requests = 0  # HTTP requests sent (for tests and benchmarks)

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    def __repr__(self) -> str:
        return f"LightS3Store({self.url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    # The rest of the store protocol, which a step does not use, from a full S3Store. Named one by
    # one: a probe such as ``getattr(store, "adopt", None)`` must not import minio to learn "no".
    def size(self, key: str) -> int:
        return self.full().size(key)  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        self.full().delete(key)

    def list(self, prefix: str = "") -> Any:
        return self.full().list(prefix)

    def url_for(self, key: str, expires: int = 3600) -> str | None:
        return self.full().url_for(key, expires)  # type: ignore[no-any-return]

    def full(self) -> Any:
        """The ``S3Store`` on the same bucket (imports ``minio``: only when really needed)."""
        if self._full is None:
            from .s3 import S3Store

            self._full = S3Store(**{**self._options, "access_key": self._access, "secret_key": self._secret})
        return self._full

    def config(self) -> dict[str, Any]:
        """The same JSON as ``S3Store.config()`` (no credentials)."""
        public = (self._options["public_endpoint"] if self._options["public_endpoint"] is not None
                  else os.environ.get("NBPIPE_S3_PUBLIC_ENDPOINT", "")).strip()
        return {"type": "s3", "endpoint": self.endpoint, "bucket": self.bucket, "prefix": self.prefix,
                "secure": self.secure, "region": self.region} | ({"public_endpoint": public} if public else {})

    # -- HTTP ------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _region(self) -> str:
        # No lookup request per pod: sign for us-east-1 (MinIO's and moto's default) unless configured;
        # a server in another region refuses that naming its region, and _request retries with it.
        return self._signing_region or "us-east-1"

    def _request(self, method: str, name: str, headers: dict[str, str] | None = None,
                 body: bytes | Callable[[], Any] | None = None, payload: str = _EMPTY_SHA256, action: str = "",
                 stream: Callable[[Any], Any] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one signed request (retried on connection errors and 5xx); ``(status, headers, body)``.

        ``body`` is bytes or a callable returning a fresh file object (so a retry can resend it);
        ``stream(response)`` consumes a 200 answer's body instead of reading it into memory.
        """
        with self._lock:
            return self._send(method, name, headers, body, payload, action, stream)

    def _send(self, method: str, name: str, headers: dict[str, str] | None, body: bytes | Callable[[], Any] | None,
              payload: str, action: str, stream: Callable[[Any], Any] | None) -> tuple[int, dict[str, str], bytes]:
        path = "/" + self.bucket + ("/" + name if name else "")  # keys and buckets need no escaping (check_key)
        for attempt in range(3):
            hdrs = dict(headers or {})
            if self._access and self._secret:
                hdrs = sign(method, self.endpoint, path, {}, hdrs, payload, self._access, self._secret, self._region())
            try:
                if self._conn is None or self._conn.broken:  # (the server closed it after its last answer)
                    self._conn = _Connection(self.endpoint, self.secure)
                data = body() if callable(body) else body
                try:
                    resp = self._conn.request(method, path, hdrs, data)
                finally:
                    if hasattr(data, "close"):
                        data.close()  # type: ignore[union-attr]
                self.requests += 1
                if resp.status == 200 and stream is not None:
                    stream(resp)
                    resp.finish()
                    return resp.status, resp.headers, b""
                content = resp.read()
                resp.finish()
                if resp.status == 400 and self._signing_region is None:
                    named = _xml_field(content, "Region") or resp.headers.get("x-amz-bucket-region", "")
                    if named and named != self._region():  # AuthorizationHeaderMalformed: the bucket's region
                        self._signing_region = named
                        continue
                if resp.status not in _RETRY_STATUS or attempt == 2:
                    return resp.status, resp.headers, content
            except OSError as exc:  # refused, reset, timed out, or a garbled answer: reconnect
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise LightS3Error(f"Cannot reach the S3 endpoint {self.url} to {action}.",
                                       f"{type(exc).__name__}: {exc}",
                                       "Check that the server is running and that the endpoint (host, port, http vs "
                                       "https) is right; in the cluster, that the MinIO Service exists.") from None
            time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _fail(self, status: int, body: bytes, action: str) -> LightS3Error:
        code = _xml_field(body, "Code") or f"HTTP {status}"
        message = _xml_field(body, "Message") or body[:200].decode("utf-8", "replace")
        if code in _DENIED:
            return LightS3Error(f"S3 denied access while trying to {action} at {self.url}.",
                                f"The server answered {code}: {message}", _CREDENTIAL_HINT)
        if code == "NoSuchBucket":
            return LightS3Error(f"Bucket {self.bucket!r} does not exist at {self.url} (while trying to {action}).",
                                hint="Create it (mc mb, or the cloud console) or open the store with create_bucket=True.")
        if status >= 500:
            return LightS3Error(f"The S3 server at {self.url} failed to {action}.", f"{code}: {message}",
                                "Check the server's logs and health; retry once it is healthy.")
        return LightS3Error(f"S3 refused to {action} at {self.url}.", f"The server answered {code}: {message}")

    def _verify(self, key: str, headers: dict[str, str], actual: str) -> None:
        expected = headers.get(DIGEST_HEADER) or (key.rsplit("/", 1)[-1] if key.startswith("sha256/") else None)
        if expected is not None and expected.lower() != actual:
            raise LightDigestMismatch(
                f"Object {key!r} in s3://{self.bucket}/{self.prefix} is corrupt: expected sha256 {expected}, "
                f"got {actual}.", "The bytes on the server changed after nbpipe wrote them (overwritten or damaged).",
                "Delete the object and re-run the step that produced it (disable its cache).")

    # -- Store protocol (the part a step uses) ----------------------------------------------

    def exists(self, key: str) -> bool:
        status, _, body = self._request("HEAD", self._name(key), action=f"look up {key!r}")
        if status in (200, 404):
            return status == 200
        raise self._fail(status, body, f"look up {key!r}")

    def local_path(self, key: str) -> str | None:
        return None

    def get_bytes(self, key: str) -> bytes:
        status, headers, body = self._request("GET", self._name(key), action=f"read {key!r}")
        if status == 404 and _xml_field(body, "Code") != "NoSuchBucket":
            raise KeyError(key)
        if status != 200:
            raise self._fail(status, body, f"read {key!r}")
        self._verify(key, headers, hashlib.sha256(body).hexdigest())
        return body

    def get_file(self, key: str, dest: str) -> None:
        """Download to ``dest`` atomically; a sha256 mismatch leaves ``dest`` untouched."""
        import tempfile  # (not at the top: tempfile, shutil and random cost a pod's start ~5 ms)

        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dest)), prefix=".nbpipe-", suffix=".part")
        out = os.fdopen(fd, "wb")
        h = [hashlib.sha256()]

        def save(resp: Any) -> None:
            out.seek(0)
            out.truncate()
            h[0] = hashlib.sha256()  # a retried GET starts over
            while chunk := resp.read(CHUNK):
                h[0].update(chunk)
                out.write(chunk)

        try:
            with out:
                status, headers, body = self._request("GET", self._name(key), action=f"read {key!r}", stream=save)
            if status == 404 and _xml_field(body, "Code") != "NoSuchBucket":
                raise KeyError(key)
            if status != 200:
                raise self._fail(status, body, f"read {key!r}")
            self._verify(key, headers, h[0].hexdigest())
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _put(self, key: str | None, digest: str, size: int, body: bytes | Callable[[], Any]) -> ObjectInfo:
        key = key or content_key(digest)
        if key.startswith("sha256/") and size >= PUT_WITHOUT_LOOKUP and self.exists(key):
            return ObjectInfo(key, digest, size)  # dedupe; small ones cost less to put again than to look up
        headers = {DIGEST_HEADER: digest, "Content-Length": str(size), "Content-Type": "application/octet-stream"}
        status, _, resp = self._request("PUT", self._name(key), headers=headers, body=body, payload=digest,
                                        action=f"upload {key!r}")
        if status != 200:
            raise self._fail(status, resp, f"upload {key!r}")
        return ObjectInfo(key, digest, size)

    def put_bytes(self, data: bytes, key: str | None = None) -> ObjectInfo:
        return self._put(key, hashlib.sha256(data).hexdigest(), len(data), bytes(data))

    def put_file(self, path: str, key: str | None = None, *, move: bool = False) -> ObjectInfo:
        """Upload a file (above :data:`SINGLE_PUT_MAX` through ``S3Store``'s multipart upload)."""
        size = os.path.getsize(path)
        if size > SINGLE_PUT_MAX:
            return self.full().put_file(path, key, move=move)  # type: ignore[no-any-return]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        info = self._put(key, h.hexdigest(), size, lambda: open(path, "rb"))
        if move:
            os.unlink(path)
        return info
