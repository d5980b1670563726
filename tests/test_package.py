"""Reading packages never runs them; malformed or hostile packages get clear errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile

import pytest

import nbpipe
from nbpipe import component, pipeline
from nbpipe.errors import PackageError
from nbpipe.package import read_package, write_package


@component
def double(x: int) -> int:
    return 2 * x


@pipeline
def twice(x: int = 2):
    double(x=double(x=x).output)


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _good() -> tuple[dict, dict[str, bytes]]:
    pkg = read_package(nbpipe.build_package(twice))
    return json.loads(json.dumps(pkg.spec)), dict(pkg.payloads)


def _with_spec(mutate) -> bytes:
    spec, payloads = _good()
    mutate(spec)
    return _zip({"nbpipe.json": json.dumps(spec).encode(), **{f"payloads/{d}": b for d, b in payloads.items()}})


class Boom:
    """Unpickling this writes a marker file: proof that something unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


HOSTILE = [
    ("not a zip", lambda: b"hello", "not an nbpipe package"),
    ("path traversal", lambda: _zip({"nbpipe.json": b"{}", "../../etc/evil": b"x"}), "path-traversal entry '../../etc/evil'"),
    ("absolute path", lambda: _zip({"/etc/passwd": b"x"}), "path-traversal"),
    ("unexpected entry", lambda: _zip({"nbpipe.json": b"{}", "run.sh": b"rm -rf"}), "unexpected entry 'run.sh'"),
    ("no spec", lambda: _zip({"payloads/" + "a" * 64: b"x"}), "has no nbpipe.json"),
    ("spec not json", lambda: _zip({"nbpipe.json": b"{nope"}), "not valid JSON"),
    ("wrong format", lambda: _with_spec(lambda s: s.update(format="kfp")), "not an nbpipe package spec"),
    ("newer version", lambda: _with_spec(lambda s: s.update(version=99)), "version 99, newer than.*Upgrade nbpipe"),
    ("schema violation", lambda: _with_spec(lambda s: s["steps"][0]["options"].update(retries=-1)),
     "invalid at steps/0/options/retries"),
    ("bad step name", lambda: _with_spec(lambda s: s["steps"][0].update(name="../x")), "invalid at steps/0/name"),
    ("unknown component", lambda: _with_spec(lambda s: s["steps"][0].update(component="nope")), "unknown component 'nope'"),
    ("dangling edge", lambda: _with_spec(lambda s: s["steps"][1]["inputs"].update(x={"step": "ghost", "output": "output"})),
     "unknown step 'ghost'"),
    ("cycle", lambda: _with_spec(lambda s: s["steps"][0].update(after=["double-2"])), "cycle"),
    ("missing payload", lambda: _zip({"nbpipe.json": json.dumps(_good()[0]).encode()}), "lacks the payload"),
]


@pytest.mark.parametrize("label,make,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_and_malformed_packages_are_rejected(label: str, make, message: str) -> None:
    with pytest.raises(PackageError, match=message):
        read_package(make())


def test_oversize_package_is_rejected_before_reading(tmp_path) -> None:
    big = tmp_path / "big.nbpipe"
    big.write_bytes(b"\0" * 2048)
    with pytest.raises(PackageError, match="over the 0 MB limit"):
        read_package(big, max_bytes=1024)


def test_zip_bomb_is_rejected() -> None:
    bomb = _zip({"nbpipe.json": b"{}", "payloads/" + "b" * 64: b"\0" * (40 * 2**20)},
                zipfile.ZIP_DEFLATED)
    assert len(bomb) < 1 * 2**20
    with pytest.raises(PackageError, match="unpacks to more than|zip bomb"):
        read_package(bomb, max_bytes=20 * 2**20)


def test_tampered_payload_is_detected(tmp_path) -> None:
    spec, payloads = _good()
    digest = next(iter(payloads))
    data = _zip({"nbpipe.json": json.dumps(spec).encode(), f"payloads/{digest}": payloads[digest] + b"!"})
    with pytest.raises(PackageError, match="does not match its digest"):
        read_package(data)


def test_reading_a_package_never_unpickles(tmp_path) -> None:
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(Boom(str(marker)))
    spec, _ = _good()
    d = hashlib.sha256(evil).hexdigest()
    for comp in spec["components"].values():
        comp["payload"]["digest"] = d
    pkg = read_package(write_package(spec, {d: evil}))
    assert pkg.payloads[d] == evil
    assert not marker.exists()


def test_written_package_round_trips_to_file(tmp_path) -> None:
    path = tmp_path / "twice.nbpipe"
    data = nbpipe.build_package(twice, path)
    assert path.read_bytes() == data
    assert read_package(path).spec == read_package(data).spec
    assert os.path.getsize(path) < 20_000


def test_digest_parts_are_optional_and_checked() -> None:
    spec, _ = _good()
    parts = spec["components"]["double"]["digest_parts"]
    assert sorted(parts) == ["code", "globals", "image", "packages", "signature"]

    def drop(s: dict) -> None:
        del s["components"]["double"]["digest_parts"]

    assert read_package(_with_spec(drop)).spec["components"]["double"].get("digest_parts") is None  # older package

    def bad(s: dict) -> None:
        s["components"]["double"]["digest_parts"]["code"] = "not a digest"

    with pytest.raises(PackageError, match="digest_parts/code"):
        read_package(_with_spec(bad))
