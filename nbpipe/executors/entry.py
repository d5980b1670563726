"""The step entrypoint: ``python -m nbpipe.executors.entry JOB.json``.

Every executor (local process, warm fork, Kubernetes pod) runs this (a pod: ``... entry env:NBPIPE_JOB``): load the component's
payload from the store, fetch inputs, call the function, write outputs to the store
atomically (content-addressed), and write a result JSON under ``job["result_key"]``. The
exit code is 0 on success, 1 when the user's code raised, 2 for a bad job or environment.

Imports only the stdlib, cloudpickle/dill, the stores, the serializers and the source map — never the
runner's web stack or database — so a step starts fast on a small base image. A step on S3 uses
:class:`nbpipe.stores.s3_light.LightS3Store` (no ``minio`` import; ``NBPIPE_S3_LIGHT=0`` opts out), and
in a pod the ``nbpipe`` package's ``__init__`` is not run at all (see ``k8s_pod.BOOTSTRAP``): modules
here import ``from ..x import y``, never ``from .. import x``, which would run it.
Non-goal: scheduling, retries, timeouts (the runner's job).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from ..artifacts import ARTIFACT_TYPES, Artifact
from ..serializers import MAX_JSON_INLINE, dump_value, load_value, preview_artifact, preview_size_ok, preview_value
from ..sourcemap import restore as restore_source

if TYPE_CHECKING:
    from ..stores.base import Store

_HERE = os.path.dirname(os.path.abspath(__file__))


class JobError(Exception):
    """The job or environment is wrong (not the user's code)."""


def open_store(config: dict[str, Any]) -> Store:
    """The step's store: :class:`~nbpipe.stores.s3_light.LightS3Store` for S3, else ``stores.open_store``."""
    if config.get("type") == "s3" and os.environ.get("NBPIPE_S3_LIGHT", "1") not in ("0", "false", "no"):
        # (``from ..stores.s3_light import``, not ``from ..stores import s3_light``: the latter asks the
        # ``nbpipe.stores`` package for the name, which in a pod runs its ``__init__``; see k8s_pod.BOOTSTRAP)
        from ..stores.s3_light import OPTIONS, LightS3Store

        if set(config) - {"type"} <= OPTIONS:  # options it does not know: the full store decides
            return LightS3Store(**{k: v for k, v in config.items() if k != "type"})  # type: ignore[return-value]
    from ..stores import open_store as open_any

    return open_any(config)


def _trim_traceback(exc: BaseException) -> str:
    """The user's traceback without nbpipe's own frames (anywidget-style boundary trim)."""
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and os.path.dirname(os.path.abspath(frames[0].filename)) == _HERE:
        frames.pop(0)
    lines = ["Traceback (most recent call last):\n"] + traceback.format_list(frames) if frames else []
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _load_function(store: Store, job: dict[str, Any]) -> Any:
    want = job.get("python", "")
    have = "%d.%d.%d" % sys.version_info[:3]
    if want and want.split(".")[:2] != have.split(".")[:2]:
        raise JobError(
            f"Component '{job['component']}' was pickled on Python {want}, but this step runs Python {have}. "
            f"cloudpickle needs the same Python minor version. Use an image with Python "
            f"{'.'.join(want.split('.')[:2])} (e.g. --image nbpipe/base:py{'.'.join(want.split('.')[:2])}) "
            f"or rebuild cluster/base-image with PYTHON_VERSION={'.'.join(want.split('.')[:2])}."
        )
    payload = job["payload"]
    data = store.get_bytes(payload["key"])
    if payload.get("serializer") == "dill":
        import dill

        func = dill.loads(data)
    else:
        import cloudpickle

        func = cloudpickle.loads(data)
    restore_source(func)  # tracebacks show the user's cells and files, with their lines
    return func


_EXACT_PIN = None  # re.compile(...) on first use: name==version, nothing else


def _pins_hold(packages: list[str]) -> bool:
    """Whether every requirement is an exact pin (``scikit-learn==1.7.2``, as components pin them) that the
    installed distribution has to the letter. Saves a step the ``packaging`` parser and ``envs.missing``
    (~50-100 ms a pod, more than a trivial step's own work); anything else goes to ``envs.ensure``."""
    global _EXACT_PIN
    import re
    from importlib import metadata

    if _EXACT_PIN is None:
        _EXACT_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)")
    for text in packages:
        m = _EXACT_PIN.fullmatch(text.strip())
        if m is None:
            return False
        try:
            if metadata.version(m[1]) != m[2]:
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


def _check_packages(job: dict[str, Any]) -> None:
    """Fail before running when the step's ``packages`` are not here (a pod installs them: see envs.ensure)."""
    if not job.get("packages") or _pins_hold(job["packages"]):
        return
    from .envs import PackagesMissing, ensure

    try:
        ensure(job["packages"], job.get("component", ""))
    except PackagesMissing as exc:
        raise JobError(str(exc)) from None


def _check_imports(job: dict[str, Any]) -> None:
    """The kernel's versions of what the component imports against this environment's (see nbpipe.pins)."""
    if not job.get("imports"):
        return
    from ..pins import VersionMismatch, check

    try:
        for line in check(str(job.get("component", "")), job["imports"], job.get("packages") or ()):
            sys.stderr.write(f"nbpipe: warning: {line}\n")
    except VersionMismatch as exc:
        raise JobError(str(exc)) from None


class _LogTee:
    """Copy everything written to fds 1 and 2 (this process and its children) into a file too.

    In a pod the container log belongs to the kubelet and goes with the pod; the copy is uploaded
    to the store so a step's log outlives its pod. stdout and stderr arrive merged, as in
    ``kubectl logs``.
    """

    def __init__(self, path: str):
        import threading

        sys.stdout.flush()
        sys.stderr.flush()
        self.path = path
        self.newline = True  # whether what was written so far ends a line
        self.console = os.dup(1)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self.file = open(path, "wb")
        self.thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self.thread.start()

    def _pump(self, read: int) -> None:
        while data := os.read(read, 65536):
            self.newline = data.endswith(b"\n")
            self.file.write(data)
            self.file.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(self.console, view):]
        os.close(read)

    def close(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.console, 1)  # drops our write ends of the pipe: the pump sees EOF
        os.dup2(self.console, 2)
        self.thread.join(timeout=2)  # longer only if a leftover child still holds the pipe
        self.file.close()


def _upload_log(job: dict[str, Any], path: str, store: Store | None = None) -> None:
    try:
        (store or open_store(job["store"])).put_file(path, key=job["log_key"])
    except Exception as exc:  # noqa: BLE001 - the container log still has it
        sys.stderr.write(f"nbpipe: could not upload the step log to the store: {exc}\n")


def _fetch(store: Store, key: str, dest: str) -> str:
    path = store.local_path(key)
    if path is not None:
        return path  # by reference: no copy for local stores
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    store.get_file(key, dest)
    return dest


def _load_inputs(store: Store, job: dict[str, Any], workdir: str) -> dict[str, Any]:
    return {name: _load_input(store, name, spec, workdir) for name, spec in job.get("inputs", {}).items()}


def _load_input(store: Store, name: str, spec: dict[str, Any], workdir: str) -> Any:
    """One input: an artifact, a value, or (``nbpipe.Collected``) a list of those, in item order."""
    if spec["kind"] == "collected":
        return [_load_input(store, f"{name}-{i}", item, workdir) for i, item in enumerate(spec["items"])]
    if spec["kind"] == "artifact":
        cls = ARTIFACT_TYPES.get(spec.get("artifact_type", "Artifact"), Artifact)
        src = _fetch(store, spec["key"], os.path.join(workdir, "inputs", name + ".blob"))
        path = src
        if spec.get("format") == "dir":
            path = os.path.join(workdir, "inputs", name)
            os.makedirs(path, exist_ok=True)
            import tarfile

            with tarfile.open(src) as tf:
                tf.extractall(path, filter="data")
        elif spec.get("filename"):
            path = os.path.join(workdir, "inputs", name, spec["filename"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                os.symlink(src, path)
            except OSError:
                import shutil

                shutil.copyfile(src, path)
        return cls(name=name, path=path, uri=spec["key"], metadata=spec.get("metadata"))
    if "value" in spec:
        return spec["value"]
    return load_value(store.get_bytes(spec["key"]), spec["format"])


def _tar_dir(path: str, dest: str) -> None:
    """Deterministic tar of a folder (sorted, no owners or times) so equal folders hash equally."""
    import tarfile

    def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mtime = 0
        return ti

    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                full = os.path.join(root, f)
                tf.add(full, arcname=os.path.relpath(full, path), filter=clean)


def _save_outputs(store: Store, job: dict[str, Any], result: Any, artifacts: dict[str, Artifact],
                  workdir: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def save_image(data: bytes, mime: str) -> str:
        return store.put_bytes(data).digest

    specs = {o["name"]: o for o in job.get("outputs", [])}
    values: dict[str, Any] = {}
    style = job.get("return_style", "single")
    value_names = [n for n, o in specs.items() if o["kind"] == "value"]
    if style == "single" and value_names:
        values[value_names[0]] = result
    elif style == "namedtuple":
        if not isinstance(result, tuple) or len(result) != len(value_names):
            raise JobError(
                f"Component '{job['component']}' must return {len(value_names)} values "
                f"({', '.join(value_names)}), got {type(result).__name__}"
                + (f" of length {len(result)}" if isinstance(result, tuple) else "")
            )
        values = dict(zip(value_names, result))
    for name, value in values.items():
        from .returns import mismatch, unstorable

        wrong = mismatch(str(job.get("component", "")), name, str(specs[name].get("type") or "any"), value)
        if wrong:
            raise JobError(wrong)
        try:
            data, fmt = dump_value(value)
        except Exception as exc:  # noqa: BLE001 - a lock, a generator, an open file...: the user's return value
            raise JobError(unstorable(str(job.get("component", "")), name, value, exc)) from None
        info = store.put_bytes(data)
        entry: dict[str, Any] = {"kind": "value", "key": info.key, "digest": info.digest, "size": info.size,
                                 "format": fmt}
        if fmt == "json" and info.size <= MAX_JSON_INLINE:
            entry["value"] = value
        entry["preview"] = preview_size_ok(preview_value(value, save_image))
        out[name] = entry
    for name, art in artifacts.items():
        path = art.path
        if art.metadata and not os.path.exists(path) and type(art).__name__ in ("Metrics", "ClassificationMetrics"):
            art._save()  # type: ignore[attr-defined]
        if os.path.isdir(path):
            blob = os.path.join(workdir, "outputs", name + ".tar")
            _tar_dir(path, blob)
            fmt, filename = "dir", ""
        elif os.path.isfile(path):
            blob, fmt, filename = path, "file", os.path.basename(path)
        else:
            raise JobError(
                f"Component '{job['component']}' declared Output[{specs[name].get('artifact_type')}] '{name}' "
                f"but wrote nothing to {name}.path. Write the file (or folder) to {name}.path."
            )
        size = os.path.getsize(blob)
        spec = specs[name]
        preview = preview_artifact(spec.get("artifact_type", "Artifact"), path if fmt == "file" else "",
                                               art.metadata, size, save_image)
        info = _store_artifact(store, job, name, blob, size)
        out[name] = {"kind": "artifact", "key": info.key, "digest": info.digest, "size": info.size, "format": fmt,
                     "artifact_type": spec.get("artifact_type", "Artifact"), "filename": filename,
                     "metadata": json.loads(json.dumps(art.metadata, default=str)),
                     "preview": preview_size_ok(preview)}
    return out


ADOPT_BYTES = 16 * 1024 * 1024


def _store_artifact(store: Store, job: dict[str, Any], name: str, blob: str, size: int) -> Any:
    """Store an output file. Large files on a local store are adopted by rename, unhashed.

    Hashing 100 MB costs longer than the rest of a step; a large output is instead named by
    an identity unique to this attempt (run, step, attempt, cache key, output name) — the
    way Kubeflow identifies outputs by their producer — so downstream cache keys stay
    correct: they hit only when this very output is reused through the cache.
    """
    adopt = getattr(store, "adopt", None)
    seed = job.get("output_seed")
    if adopt is not None and seed and size >= ADOPT_BYTES:
        import hashlib

        from ..stores.base import content_key

        identity = hashlib.sha256(f"nbpipe-output:{seed}:{name}".encode()).hexdigest()
        info = adopt(blob, content_key(identity), identity)
        if info is not None:
            return info
    return store.put_file(blob, move=True)


def keep_orphans() -> None:
    """Make this step process the subreaper of everything it starts (Linux ``PR_SET_CHILD_SUBREAPER``).

    A daemon started the classic way (fork, ``setsid``, fork again, the middle process exits) would
    be re-parented to init, out of the step's tree, and survive a cancel; re-parented here instead,
    it stays a descendant the runner finds and kills (see :func:`nbpipe.executors.local.kill_tree`)."""
    if _LIBC is not None:
        _LIBC.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (OSError, AttributeError):
        return None


# Loaded once (in the zygote, before it forks steps). Not in a pod (``NBPIPE_POD_NAME``, see k8s_pod): the
# container is the step's tree, and ending the pod ends all of it; ctypes would cost each pod ~3-5 ms.
_LIBC = None if os.environ.get("NBPIPE_POD_NAME") else _libc()


def run_job(job: dict[str, Any], store: Store | None = None, write_result: Any = None) -> int:
    """Run one step attempt described by ``job`` (on ``store``, else the job's); always try to write a result.

    ``write_result``: called with the result's JSON bytes instead of writing them here (see :func:`start`).
    """
    keep_orphans()
    t0 = time.time()
    store = store or open_store(job["store"])
    workdir = job.get("workdir") or os.getcwd()
    os.makedirs(workdir, exist_ok=True)
    result: dict[str, Any] = {"status": "failed", "started_at": t0}
    code = 2
    try:
        os.environ.update(job.get("env", {}))
        _check_packages(job)
        _check_imports(job)
        func = _load_function(store, job)
        kwargs = _load_inputs(store, job, workdir)
        artifacts: dict[str, Artifact] = {}
        for o in job.get("outputs", []):
            if o["kind"] == "artifact":
                cls = ARTIFACT_TYPES.get(o.get("artifact_type", "Artifact"), Artifact)
                d = os.path.join(workdir, "outputs", o["name"])
                os.makedirs(d, exist_ok=True)
                art = cls(name=o["name"], path=os.path.join(d, o["name"]))
                artifacts[o["name"]] = art
                kwargs[o["name"]] = art
        t1 = time.time()
        try:
            value = func(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - report whatever the user's code raised
            code = 1
            tb = _trim_traceback(exc)
            sys.stderr.write(tb)
            result["error"] = {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb}
            return code
        t2 = time.time()
        sys.stdout.flush()
        result["outputs"] = _save_outputs(store, job, value, artifacts, workdir)
        result["status"] = "succeeded"
        result["timing"] = {"setup": t1 - t0, "call": t2 - t1, "save": time.time() - t2}
        code = 0
    except JobError as exc:
        sys.stderr.write(f"nbpipe: {exc}\n")
        result["error"] = {"type": "JobError", "message": str(exc), "traceback": ""}
    except Exception as exc:  # noqa: BLE001 - loading/saving failed: report with traceback
        tb = _trim_traceback(exc)
        sys.stderr.write(tb)
        result["error"] = {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb}
    finally:
        result["finished_at"] = time.time()
        if write_result is not None:
            write_result(json.dumps(result, default=str).encode())
        elif not _put_result(store, job, json.dumps(result, default=str).encode()):
            code = code or 2
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _put_result(store: Store, job: dict[str, Any], data: bytes) -> bool:
    try:
        store.put_bytes(data, key=job["result_key"])
        return True
    except Exception as exc:  # noqa: BLE001 - nothing more we can do than say so
        sys.stderr.write(f"nbpipe: could not write the step result: {exc}\n")
        return False


def _tmpdir() -> str:
    """``tempfile.gettempdir()`` without importing ``tempfile`` (and ``shutil``, ``random``: ~5 ms a pod)."""
    for var in ("TMPDIR", "TEMP", "TMP"):
        if os.environ.get(var):
            return os.environ[var]
    return "/tmp" if os.access("/tmp", os.W_OK) else os.getcwd()


def read_job(arg: str) -> dict[str, Any]:
    """The job named on the command line: a JSON file, ``-`` (stdin), or ``env:VAR``.

    ``env:VAR`` is how a pod gets it (see :func:`nbpipe.executors.k8s_pod.build_pod`): base64 of
    gzipped JSON in that variable, decoded here rather than by a shell and two more programs. The
    variable is then removed, so the step's own subprocesses do not carry it.
    """
    if arg.startswith("env:"):
        import binascii
        import zlib

        try:
            data = zlib.decompress(binascii.a2b_base64(os.environ.pop(arg[4:])), wbits=31)
        except KeyError:
            raise ValueError(f"the variable {arg[4:]} is not set") from None
        except (binascii.Error, zlib.error) as exc:
            raise ValueError(f"the variable {arg[4:]} is not base64 of gzipped JSON ({exc})") from None
        return json.loads(data)  # type: ignore[no-any-return]
    text = sys.stdin.read() if arg == "-" else open(arg, encoding="utf-8").read()
    return json.loads(text)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m nbpipe.executors.entry JOB.json (or - for stdin, env:VAR for a variable)\n")
        return 2
    try:
        job = read_job(argv[0])
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"nbpipe: cannot read job {argv[0]}: {exc}\n")
        return 2
    in_pod = argv[0].startswith("env:")
    code = start(job, in_pod=in_pod)
    if in_pod:
        # Outputs, result and log are in the store: end now. A normal exit tears the interpreter down
        # first, which after pandas/scikit-learn/matplotlib took 0.4-1.1 s of every digits pod on the
        # k8s-rig (0.03-0.08 s with os._exit). Local steps forked from the zygote end the same way, so
        # a step's leftover non-daemon threads and atexit hooks do not hold it up anywhere.
        _run_exit_handlers()  # (those not run yet: a job without a log of its own)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run_exit_handlers() -> None:
    """The step's own ``atexit`` handlers (W&B's ``finish``, MLflow's ``end_run``), as a normal exit
    runs them: the pod ends with ``os._exit``, which skips them. Run once (Python forgets them after);
    their errors are printed, as Python prints them, and do not change the step's result."""
    try:
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - never in the way of the exit
        pass


def start(job: dict[str, Any], in_pod: bool = False) -> int:
    """Open the job's store, fetch a large job from it, and run the job with its log teed to the store.

    ``in_pod``: a Kubernetes pod, whose component ``packages`` go to the node's tmp when the runner
    mounted no package cache claim (``NBPIPE_PACKAGE_CACHE``; see :func:`nbpipe.executors.envs.ensure`).
    """
    import faulthandler

    try:
        store = open_store(job["store"])
    except Exception as exc:  # noqa: BLE001 - say which store could not be opened
        sys.stderr.write(f"nbpipe: cannot open the step's store {job.get('store')!r}: {exc}\n")
        return 2
    if "job_key" in job and "payload" not in job:  # a large job waits in the store (Kubernetes executor)
        try:
            job = json.loads(store.get_bytes(job["job_key"]))
        except Exception as exc:  # noqa: BLE001 - say which job could not be read
            sys.stderr.write(f"nbpipe: cannot read job {job['job_key']} from the store: {exc}\n")
            return 2
    if in_pod and job.get("packages"):
        os.environ.setdefault("NBPIPE_PACKAGE_CACHE", os.path.join(_tmpdir(), "nbpipe-packages"))
    warmed = ""  # what a standby pod's package check printed before it had a step (and its log)
    if "standby" in job:  # a prewarmed pod (Kubernetes): its packages imported, it waits for its step's job
        from .k8s_standby_pod import WARM_OUTPUT, wait_for_job

        got = wait_for_job(store, job)
        if got is None:
            sys.stderr.write("nbpipe: standby pod: no step came within its idle time; exiting\n")
            return 0
        job, warmed = got, "".join(WARM_OUTPUT)
    if not job.get("log_key"):
        faulthandler.enable()
        sys.stdout.write(warmed)
        return run_job(job, store)
    tee = _LogTee(os.path.join(_tmpdir(), f"nbpipe-step-{os.getpid()}.log"))
    faulthandler.enable(file=os.fdopen(tee.console, "w", closefd=False))
    if warmed:
        sys.stdout.write(warmed)
        sys.stdout.flush()
    result: list[bytes] = []
    code = 2
    try:
        code = run_job(job, store, write_result=result.append)
        _run_exit_handlers()  # before the log closes: what they print is the step's log too
    finally:
        tee.close()
        # The result and the log are the step's last two writes: sent side by side (the log on a second
        # connection), the pod ends one store round trip sooner. The runner reads both once it has ended.
        import threading

        uploader = threading.Thread(target=_upload_log, args=(job, tee.path, None), daemon=True)
        uploader.start()
        if result and not _put_result(store, job, result[0]):
            code = code or 2
        uploader.join()
        if job.get("log_end"):  # tells a runner following the container's log that it is complete (Kubernetes)
            sys.stdout.write(("" if tee.newline else "\n") + f"nbpipe: end of step log {job['log_end']}\n")
            sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
