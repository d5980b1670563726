"""The step pods' small S3 client (nbpipe.stores.s3_light) against moto, S3Store and minio's signer.

Signatures are checked two ways: byte-for-byte against minio's own SigV4 signer, and by a moto
server with IAM authentication on (it recomputes every request's signature with the user's secret).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from minio import Minio
from minio.credentials import Credentials
from minio.signer import sign_v4_s3
from test_store_s3 import ACCESS, SECRET, moto_url, start_moto, stop  # noqa: F401 - moto_url is a fixture

from nbpipe.stores import s3_light
from nbpipe.stores.s3 import S3Store
from nbpipe.stores.s3_light import LightDigestMismatch, LightS3Error, LightS3Store, sign

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pair(moto_url: str) -> tuple[S3Store, LightS3Store]:
    """A full store and a light one on the same bucket and prefix."""
    prefix = f"l-{uuid.uuid4().hex[:10]}"
    full = S3Store(moto_url, "nbpipe-light", prefix=prefix, access_key=ACCESS, secret_key=SECRET)
    return full, LightS3Store(moto_url, "nbpipe-light", prefix=prefix, access_key=ACCESS, secret_key=SECRET)


@pytest.mark.parametrize(("method", "query", "headers", "payload"), [
    ("GET", {}, {}, hashlib.sha256(b"").hexdigest()),
    ("PUT", {}, {"x-amz-meta-sha256": "ab" * 32}, "cd" * 32),
    ("GET", {"location": ""}, {}, hashlib.sha256(b"").hexdigest()),
])
def test_signature_matches_minios_signer(method: str, query: dict[str, str], headers: dict[str, str],
                                         payload: str) -> None:
    when = dt.datetime(2026, 12, 1, 0, 50, 7, tzinfo=dt.timezone.utc)
    path = "/bucket/pre/sha256/ab/" + "ab" * 32
    url = urlsplit("http://127.0.0.1:9000" + path + ("?location=" if query else ""))
    theirs = sign_v4_s3(method=method, url=url, region="eu-west-3",
                        headers={"Host": "127.0.0.1:9000", "x-amz-date": when.strftime("%Y%m%dT%H%M%SZ"),
                                 "x-amz-content-sha256": payload, **headers},
                        credentials=Credentials(ACCESS, SECRET), content_sha256=payload, date=when)
    ours = sign(method, "127.0.0.1:9000", path, query, headers, payload, ACCESS, SECRET, "eu-west-3",
                now=when.timestamp())
    assert ours["Authorization"] == theirs["Authorization"]


def test_roundtrip_both_ways_with_s3store(pair: tuple[S3Store, LightS3Store], tmp_path: Path) -> None:
    full, light = pair
    info = light.put_bytes(b"written by a pod")
    assert info.key == "sha256/" + info.digest[:2] + "/" + info.digest
    assert full.get_bytes(info.key) == b"written by a pod"  # the digest metadata S3Store checks is there
    light.put_bytes(b'{"status": "succeeded"}', key="runs/r1/s/1/result.json")
    assert json.loads(full.get_bytes("runs/r1/s/1/result.json"))["status"] == "succeeded"
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    finfo = light.put_file(str(src), move=True)
    assert not src.exists() and full.size(finfo.key) == 3 * 1024 * 1024 + 5
    payload = full.put_bytes(b"a pickled function")
    assert light.get_bytes(payload.key) == b"a pickled function"
    dest = tmp_path / "in" / "x.blob"
    dest.parent.mkdir()
    light.get_file(finfo.key, str(dest))
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == finfo.digest
    assert light.exists(payload.key) and not light.exists("runs/none")
    assert light.config() == full.config()


def test_missing_key_and_corruption(pair: tuple[S3Store, LightS3Store], moto_url: str, tmp_path: Path) -> None:
    full, light = pair
    with pytest.raises(KeyError):
        light.get_bytes("runs/missing")
    with pytest.raises(KeyError):
        light.get_file("runs/missing", str(tmp_path / "d"))
    assert not (tmp_path / "d").exists() and list(tmp_path.iterdir()) == []
    info = light.put_bytes(b"the real bytes", key="runs/r/out")
    host = urlsplit(moto_url).netloc
    raw = Minio(host, access_key=ACCESS, secret_key=SECRET, secure=False)
    raw.put_object("nbpipe-light", f"{light.prefix}/runs/r/out", io.BytesIO(b"tampered!"), 9,
                   metadata={"sha256": info.digest})
    with pytest.raises(LightDigestMismatch, match="corrupt: expected sha256"):
        light.get_bytes("runs/r/out")
    with pytest.raises(LightDigestMismatch):
        light.get_file("runs/r/out", str(tmp_path / "d"))
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_large_files_and_other_methods_go_to_s3store(pair: tuple[S3Store, LightS3Store], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    full, light = pair
    monkeypatch.setattr(s3_light, "SINGLE_PUT_MAX", 1024)
    src = tmp_path / "big"
    src.write_bytes(b"x" * 5000)
    info = light.put_file(str(src))
    assert light._full is not None and full.get_bytes(info.key) == b"x" * 5000
    assert info.key in set(light.list("sha256/"))
    light.delete(info.key)
    assert not full.exists(info.key)


def test_probing_for_optional_methods_does_not_open_the_full_store(pair: tuple[S3Store, LightS3Store]) -> None:
    _, light = pair
    assert getattr(light, "adopt", None) is None and light.local_path("runs/x") is None  # what the entrypoint asks
    assert light._full is None


def test_content_objects_are_not_looked_up_when_small(pair: tuple[S3Store, LightS3Store]) -> None:
    _, light = pair
    light._region()
    before = light.requests
    light.put_bytes(b"small value")
    assert light.requests - before == 1  # one PUT, no HEAD first


def test_bad_bucket_and_unreachable_server_say_so(moto_url: str) -> None:
    light = LightS3Store(moto_url, "no-such-bucket-here", access_key=ACCESS, secret_key=SECRET, region="us-east-1")
    with pytest.raises(LightS3Error, match="Bucket 'no-such-bucket-here' does not exist"):
        light.get_bytes("runs/x")
    dead = LightS3Store("http://127.0.0.1:9", "b", access_key=ACCESS, secret_key=SECRET, region="us-east-1")
    with pytest.raises(LightS3Error, match="Cannot reach the S3 endpoint http://127.0.0.1:9"):
        dead.put_bytes(b"x", key="runs/x")


def test_signatures_accepted_by_a_server_that_checks_them() -> None:
    """moto with IAM auth on recomputes each signature; a wrong secret is refused, named as denied."""
    import boto3

    proc, url = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="pod")
        key = iam.create_access_key(UserName="pod")["AccessKey"]
        iam.put_user_policy(UserName="pod", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        access, secret = key["AccessKeyId"], key["SecretAccessKey"]
        full = S3Store(url, "signed", access_key=access, secret_key=secret)
        light = LightS3Store(url, "signed", access_key=access, secret_key=secret)
        info = light.put_bytes(b"signed bytes", key="runs/a/b")
        assert full.get_bytes(info.key) == b"signed bytes" and light.get_bytes("runs/a/b") == b"signed bytes"
        wrong = LightS3Store(url, "signed", access_key=access, secret_key=secret + "x", region="us-east-1")
        with pytest.raises(LightS3Error, match="denied access") as exc:
            wrong.get_bytes("runs/a/b")
        assert secret not in str(exc.value)
    finally:
        stop(proc)


def test_a_step_process_imports_neither_minio_nor_the_nbpipe_package(tmp_path: Path) -> None:
    """What a pod's step loads (k8s_pod.BOOTSTRAP): no minio, no authoring side, no importlib.metadata."""
    from nbpipe.executors.k8s_pod import BOOTSTRAP

    (tmp_path / "probe.py").write_text(
        "import sys\nimport nbpipe.executors.entry, nbpipe.stores.s3_light\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('minio', 'urllib3')\n"
        "             or m in ('nbpipe.component', 'nbpipe.pipeline', 'nbpipe.capture', 'importlib.metadata',\n"
        "                      'http.client', 'email.parser', 'ssl', 'nbpipe.plugins', 'nbpipe.stores.scoped',\n"
        "                      'tempfile', 'shutil', 'pathlib', 'ctypes')))\n"
        # the packages' real __init__ runs on first use of anything else they hold
        "from nbpipe.stores import open_store\nprint(open_store.__module__)\n"
        "import nbpipe\nprint(nbpipe.Dataset.__module__)\n"
        "from nbpipe.executors import names\nprint('kubernetes' in names())\n")
    out = subprocess.run([sys.executable, "-c", BOOTSTRAP, "-m", "probe"], capture_output=True, text=True,
                         cwd=tmp_path, check=True, env={**os.environ, "NBPIPE_POD_NAME": "probe"})
    assert out.stdout.splitlines() == ["[]", "nbpipe.stores", "nbpipe.artifacts", "True"], out.stdout + out.stderr


class _RegionalServer:
    """An S3 stand-in in region eu-west-3: refuses other regions' signatures naming its own (as AWS does),
    answers GETs chunked and closes the connection after every other answer."""

    def __init__(self) -> None:
        import http.server
        import threading

        objects: dict[str, tuple[bytes, str]] = {}
        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _refuse_wrong_region(self) -> bool:
                scope = self.headers.get("Authorization", "").split("Credential=")[1].split(",")[0]
                seen.append(scope.split("/")[2])
                if scope.split("/")[2] == "eu-west-3":
                    return False
                body = b"<Error><Code>AuthorizationHeaderMalformed</Code><Region>eu-west-3</Region></Error>"
                self.send_response(400)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return True

            def do_PUT(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if self._refuse_wrong_region():
                    return
                objects[self.path] = (data, self.headers["x-amz-meta-sha256"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                if len(seen) % 2:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()

            def do_GET(self) -> None:
                if self._refuse_wrong_region():
                    return
                data, digest = objects[self.path]
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("x-amz-meta-sha256", digest)
                self.end_headers()
                for i in range(0, len(data), 7):
                    piece = data[i:i + 7]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")

        self.seen = seen
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_bucket_in_another_region_chunked_answers_and_closed_connections(tmp_path: Path) -> None:
    server = _RegionalServer()
    try:
        light = LightS3Store(server.url, "b", access_key=ACCESS, secret_key=SECRET)
        data = b"chunked answers are reassembled " * 3
        light.put_bytes(data, key="runs/x")
        assert server.seen == ["us-east-1", "eu-west-3"]  # learned from the refusal, once
        light.put_bytes(b"more", key="runs/y")  # after a "Connection: close": a new connection, no error
        assert light.get_bytes("runs/x") == data and light.get_bytes("runs/y") == b"more"
        light.get_file("runs/x", str(tmp_path / "x"))
        assert (tmp_path / "x").read_bytes() == data and server.seen.count("us-east-1") == 1
    finally:
        server.server.shutdown()
