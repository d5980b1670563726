"""The package file: one zip holding ``nbpipe.json`` (the spec) and ``payloads/<sha256>``.

Writing is deterministic: the same pipeline gives the same bytes (sorted entries, fixed
timestamps and modes, canonical JSON). Reading never unpickles or imports anything: it checks
size limits, entry names (no path traversal), the format version, the JSON schema, the DAG and
every payload's digest, and raises :class:`~nbpipe.errors.PackageError` saying what is wrong.

Non-goal: long-term archiving of pickles; payloads load only on the Python minor version
recorded for each component.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .compiler import PACKAGE_FORMAT, PACKAGE_VERSION, toposort
from .errors import DefinitionError, PackageError

SPEC_NAME = "nbpipe.json"
PAYLOAD_RE = re.compile(r"^payloads/([0-9a-f]{64})$")
MAX_PACKAGE_BYTES = int(os.environ.get("NBPIPE_MAX_PACKAGE_BYTES", 256 * 1024 * 1024))
MAX_SPEC_BYTES = 32 * 1024 * 1024
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
SUFFIX = ".nbpipe"


@dataclass(frozen=True)
class Package:
    """A read (validated) package: its spec, payloads by digest, and the file's digest."""

    spec: dict[str, Any]
    payloads: dict[str, bytes]
    digest: str
    data: bytes

    @property
    def name(self) -> str:
        return str(self.spec["pipeline"]["name"])

    @property
    def parameters(self) -> list[dict[str, Any]]:
        return list(self.spec["pipeline"]["parameters"])

    def component_of(self, step: str) -> dict[str, Any]:
        for s in self.spec["steps"]:
            if s["name"] == step:
                return self.spec["components"][s["component"]]
        raise KeyError(step)


def _canonical(spec: dict[str, Any]) -> bytes:
    # Compact separators keep json on its C encoder (indent forces the pure-Python one: ~6x slower).
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def write_package(spec: dict[str, Any], payloads: dict[str, bytes], path: str | os.PathLike[str] | None = None) -> bytes:
    """Serialize a spec and its payloads; optionally also write them to ``path``."""
    buf = io.BytesIO()
    needed = sorted({c["payload"]["digest"] for c in spec["components"].values()})
    with zipfile.ZipFile(buf, "w") as zf:
        entries = [(SPEC_NAME, _canonical(spec))] + [(f"payloads/{d}", payloads[d]) for d in needed]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, data, compresslevel=6)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def build_package(pipeline: Any, path: str | os.PathLike[str] | None = None) -> bytes:
    """Package a :class:`~nbpipe.pipeline.Pipeline` as the kernel has it *now*.

    The one way to turn a live pipeline object into package bytes (``nbpipe.run``,
    ``Client.submit``, the magics, re-runs with the user's fix): each component is resolved to
    its current definition and captured afresh with the globals and helpers it uses now
    (:meth:`~nbpipe.pipeline.Pipeline.capture`). Unchanged pipelines reuse their last bytes.
    """
    spec, payloads = pipeline.capture()
    last = getattr(pipeline, "_nbpipe_package", None)
    if last is not None and last[0] is spec:
        data = last[1]
        if path is not None:
            Path(path).write_bytes(data)
        return data  # type: ignore[no-any-return]
    data = write_package(spec, payloads, path)
    if len(data) > MAX_PACKAGE_BYTES:  # the runner would refuse it: say which captured value makes it large
        from .capture_checks import too_large

        raise too_large(pipeline, len(data), MAX_PACKAGE_BYTES)
    pipeline._nbpipe_package = (spec, data)
    return data


# Libraries ``jsonschema`` imports only to check string formats (``iri``, ``duration``, ...); the
# package schema asserts no format, and ``rfc3987_syntax`` alone builds a grammar for ~1 s on import.
_FORMAT_LIBS = ("rfc3987_syntax", "rfc3987", "rfc3986_validator", "rfc3339_validator", "fqdn", "idna",
                "webcolors", "jsonpointer", "uri_template", "isoduration")
_LEAN = {"on": False}


def lean_validator() -> None:
    """In a process of nbpipe's own (the runner, ``nbpipe inspect``): import ``jsonschema`` without its
    format-checking libraries, which the package schema never uses. Not for a user's kernel, where
    the user's own ``jsonschema.FormatChecker`` would lose those formats."""
    _LEAN["on"] = True


def _import_jsonschema() -> Any:
    import sys

    if not _LEAN["on"] or "jsonschema" in sys.modules:
        import jsonschema

        return jsonschema
    blocked = [m for m in _FORMAT_LIBS if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]  # import raises ImportError: the format is skipped
    try:
        import jsonschema
    finally:
        for m in blocked:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    return jsonschema


@lru_cache(maxsize=None)
def _validator(version: int) -> Any:
    """The JSON-schema validator of one package format version (``schema/package-v<N>.json``)."""
    jsonschema = _import_jsonschema()
    schema = json.loads((Path(__file__).parent / "schema" / f"package-v{version}.json").read_text())
    return jsonschema.Draft202012Validator(schema)


MAX_UNPACKED_BYTES = int(os.environ.get("NBPIPE_MAX_UNPACKED_BYTES", 512 * 1024 * 1024))
MAX_JSON_DEPTH = 64


def read_package(source: bytes | str | os.PathLike[str], max_bytes: int | None = None) -> Package:
    """Read and validate a package from bytes or a file path, without running anything."""
    limit = max_bytes or MAX_PACKAGE_BYTES
    where = "package"
    if isinstance(source, (str, os.PathLike)):
        where = f"package {os.fspath(source)}"
        try:
            size = os.path.getsize(source)
        except OSError as exc:
            raise PackageError(f"Cannot read {where}", str(exc)) from None
        if size > limit:
            raise PackageError(f"The {where} is {size / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit",
                               hint="Pass large data as artifacts at run time, not inside components.")
        data = Path(source).read_bytes()
    else:
        data = bytes(source)
    if len(data) > limit:
        raise PackageError(f"The {where} is {len(data) / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit",
                           hint="Pass large data as artifacts at run time, not inside components.")
    zf = _open_zip(io.BytesIO(data), where)
    names = _check_entries(zf, where, max_bytes or MAX_UNPACKED_BYTES)
    spec = _load_spec(zf, where)
    payloads: dict[str, bytes] = {}
    for comp_name, comp in spec["components"].items():
        d = comp["payload"]["digest"]
        if d in payloads:
            continue
        entry = f"payloads/{d}"
        if entry not in names:
            raise PackageError(f"The {where} lacks the payload of component '{comp_name}' ({entry})")
        try:
            blob = zf.read(entry)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise PackageError(f"The {where}'s payload of component '{comp_name}' is corrupt ({exc})") from None
        if hashlib.sha256(blob).hexdigest() != d:
            raise PackageError(f"The payload of component '{comp_name}' does not match its digest",
                               "the package was modified or corrupted.", "Export it again.")
        payloads[d] = blob
    return Package(spec=spec, payloads=payloads, digest=hashlib.sha256(data).hexdigest(), data=data)


def scan_package_file(path: str | os.PathLike[str], put_payload: Any, tmp_dir: str | None = None) -> dict[str, Any]:
    """Validate a package file and hand each payload to ``put_payload(digest, file_path)`` as a verified file.

    The runner's way in: payloads are streamed from the zip to temporary files (hashed and
    counted as they go), so memory stays bounded whatever the package inflates to; the total
    unpacked size is limited (``NBPIPE_MAX_UNPACKED_BYTES``), not guessed from a ratio.
    Returns the spec.
    """
    import tempfile

    where = "package"
    with open(path, "rb") as fh:
        zf = _open_zip(fh, where)
        names = _check_entries(zf, where, MAX_UNPACKED_BYTES)
        spec = _load_spec(zf, where)
        _check_names(spec, where)
        done: set[str] = set()
        for comp_name, comp in spec["components"].items():
            d = comp["payload"]["digest"]
            if d in done:
                continue
            entry = f"payloads/{d}"
            if entry not in names:
                raise PackageError(f"The {where} lacks the payload of component '{comp_name}' ({entry})")
            fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="payload-")
            try:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, zf.open(entry) as src:
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != d:
                    raise PackageError(f"The payload of component '{comp_name}' does not match its digest",
                                       "the package was modified or corrupted.", "Export it again.")
                put_payload(d, tmp)
            except (zipfile.BadZipFile, EOFError, ValueError) as exc:
                raise PackageError(f"The {where}'s payload of component '{comp_name}' is corrupt ({exc})") from None
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            done.add(d)
    return spec


def _open_zip(fh: Any, where: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise PackageError(f"The {where} is not an nbpipe package (not a zip file: {exc})",
                           hint="Build one with nbpipe.build_package(pipeline) or `nbpipe export`.") from None


def _check_entries(zf: zipfile.ZipFile, where: str, unpacked_limit: int) -> set[str]:
    """Entry names (no path traversal, only the spec and payloads) and the real unpacked size."""
    total = 0
    names: set[str] = set()
    for info in zf.infolist():
        name = info.filename
        if name in names:
            raise PackageError(f"The {where} has the entry {name!r} twice")
        names.add(name)
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or "\\" in name or ":" in name:
            raise PackageError(f"The {where} contains a path-traversal entry {name!r}; refusing to read it",
                               hint="Only nbpipe.json and payloads/<sha256> entries are allowed.")
        if name != SPEC_NAME and not PAYLOAD_RE.match(name):
            raise PackageError(f"The {where} contains an unexpected entry {name!r}",
                               hint="Only nbpipe.json and payloads/<sha256> entries are allowed.")
        # zipfile never reads past an entry's declared size (a lie fails its CRC), so the sum of
        # declared sizes is a real bound on what this package can unpack to.
        total += info.file_size
        if total > unpacked_limit:
            raise PackageError(f"The {where} unpacks to more than {unpacked_limit / 2**20:.0f} MiB",
                               hint="Pass large data as artifacts at run time, not inside components "
                                    "(or raise NBPIPE_MAX_UNPACKED_BYTES on the runner).")
    if SPEC_NAME not in names:
        raise PackageError(f"The {where} has no {SPEC_NAME}", hint="It was not made by nbpipe.")
    return names


def _load_spec(zf: zipfile.ZipFile, where: str) -> dict[str, Any]:
    if zf.getinfo(SPEC_NAME).file_size > MAX_SPEC_BYTES:
        raise PackageError(f"The {where}'s {SPEC_NAME} is over {MAX_SPEC_BYTES // 2**20} MiB")
    try:
        spec = json.loads(zf.read(SPEC_NAME))
    except RecursionError:
        raise PackageError(f"The {where}'s {SPEC_NAME} is nested too deeply") from None
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise PackageError(f"The {where}'s {SPEC_NAME} is not valid JSON ({exc})") from None
    if json_depth(spec) > MAX_JSON_DEPTH:
        raise PackageError(f"The {where}'s {SPEC_NAME} is nested more than {MAX_JSON_DEPTH} levels deep")
    check_spec(spec, where)
    return spec  # type: ignore[no-any-return]


def _check_names(spec: dict[str, Any], where: str) -> None:
    """Names fit the runner's database columns (the same on SQLite and PostgreSQL) and hold no NUL."""
    names = [("pipeline name", spec["pipeline"]["name"], 200)]
    names += [("component name", c, 200) for c in spec["components"]]
    names += [("step name", st["name"], 250) for st in spec["steps"]]
    for what, name, limit in names:
        if not isinstance(name, str) or len(name) > limit or "\x00" in name:
            raise PackageError(f"The {where} has a {what} that is not a string of at most {limit} characters "
                               f"without NUL: {str(name)[:60]!r}…")


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (iteratively: no recursion limit to hit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v)
    return deepest


def check_spec(spec: Any, where: str = "package") -> None:
    """Validate a spec dict: format, version, schema, references and the DAG."""
    if not isinstance(spec, dict) or spec.get("format") != PACKAGE_FORMAT:
        raise PackageError(f"The {where} is not an nbpipe package spec (format is {spec.get('format')!r})"
                           if isinstance(spec, dict) else f"The {where}'s spec is not a JSON object")
    version = spec.get("version")
    if not isinstance(version, int) or version < 1:
        raise PackageError(f"The {where} has an invalid version {version!r}")
    if version > PACKAGE_VERSION:
        raise PackageError(f"The {where} uses package format version {version}, newer than this nbpipe "
                           f"understands (up to {PACKAGE_VERSION})", hint="Upgrade nbpipe: pip install -U nbpipe.")
    errors = sorted(_validator(version).iter_errors(spec), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        loc = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise PackageError(f"The {where}'s spec is invalid at {loc}: {e.message}",
                           f"({len(errors)} problem(s) in all)" if len(errors) > 1 else "")
    comps = spec["components"]
    params = {p["name"] for p in spec["pipeline"]["parameters"]}
    step_names: set[str] = set()
    for s in spec["steps"]:
        if s["name"] in step_names:
            raise PackageError(f"The {where} has two steps named '{s['name']}'")
        step_names.add(s["name"])
        comp = comps.get(s["component"])
        if comp is None:
            raise PackageError(f"Step '{s['name']}' in the {where} uses unknown component '{s['component']}'")
        inputs = {i["name"]: i for i in comp["inputs"]}
        for arg, b in s["inputs"].items():
            if arg not in inputs:
                raise PackageError(f"Step '{s['name']}' in the {where} binds unknown input '{arg}'")
            if "parameter" in b and b["parameter"] not in params:
                raise PackageError(f"Step '{s['name']}' in the {where} uses unknown parameter '{b['parameter']}'")
    by_name = {s["name"]: s for s in spec["steps"]}
    for s in spec["steps"]:
        for b in s["inputs"].values():
            if "step" in b:
                up = by_name.get(b["step"])
                if up is None:
                    raise PackageError(f"Step '{s['name']}' in the {where} reads from unknown step '{b['step']}'")
                outs = {o["name"] for o in comps[up["component"]]["outputs"]}
                if b["output"] not in outs:
                    raise PackageError(f"Step '{s['name']}' in the {where} reads unknown output "
                                       f"'{b['step']}.{b['output']}'")
    if version >= 2:
        _check_groups(spec, where)
    try:
        toposort(spec["steps"], where)
    except DefinitionError as exc:
        raise PackageError(exc.headline, exc.detail, exc.hint) from None


def _check_groups(spec: dict[str, Any], where: str) -> None:
    """Version 2: every group, loop and collected step a spec names exists."""
    groups = {g["id"]: g for g in spec.get("groups", [])}
    steps = {s["name"] for s in spec["steps"]}
    for g in groups.values():
        if g["parent"] and g["parent"] not in groups:
            raise PackageError(f"Group '{g['id']}' in the {where} has unknown parent '{g['parent']}'")
        if g["kind"] == "exit" and g["handler"] not in steps:
            raise PackageError(f"Exit handler group '{g['id']}' in the {where} names unknown step '{g['handler']}'")
    for gid in groups:  # parents must not loop
        chain, cur = [], gid
        while cur:
            if cur in chain:
                raise PackageError(f"The {where}'s groups nest in a cycle: {' -> '.join(chain + [cur])}")
            chain.append(cur)
            cur = groups[cur]["parent"]
    for s in spec["steps"]:
        if s.get("group") and s["group"] not in groups:
            raise PackageError(f"Step '{s['name']}' in the {where} is in unknown group '{s['group']}'")
        for arg, b in s["inputs"].items():
            if "loop" in b and (b["loop"] not in groups or groups[b["loop"]]["kind"] != "for"):
                raise PackageError(f"Step '{s['name']}' input '{arg}' in the {where} reads unknown loop '{b['loop']}'")
            if "collect" in b and b["collect"]["step"] not in steps:
                raise PackageError(f"Step '{s['name']}' input '{arg}' in the {where} collects unknown step "
                                   f"'{b['collect']['step']}'")
