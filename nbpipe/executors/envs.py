"""Package overlays: make a component's ``packages`` importable for a local step.

:func:`missing` says which requirements the current interpreter does not satisfy
(``importlib.metadata`` + ``packaging.requirements``). :func:`prepare` (called by the runner
before a local attempt) builds, once per requirement set, an overlay environment under the
runner's data dir with ``uv``: a virtualenv that sees the runner's own packages (nbpipe,
cloudpickle, …) and adds only what was lacking; the step then runs with that environment's
Python (the job's ``python_executable``). With ``NBPIPE_INSTALL_PACKAGES=0`` nothing is
installed and the step fails before it runs, naming what is missing.

Kubernetes steps install ``packages`` in the pod instead (see :mod:`.k8s_pod`).
Non-goals: resolving conflicts with the runner's own packages (the overlay's versions win for
the step), removing old overlays, and extras (``pkg[extra]`` is checked by name and version only).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import NbpipeError


class PackagesMissing(NbpipeError):
    """A step needs packages its environment lacks and nbpipe may not (or could not) install them."""


def _requirement(text: str) -> Any:
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # a minimal image without packaging: compare names only
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
        if not m:
            raise PackagesMissing(f"Package requirement {text!r} is not valid") from None
        return m[1]
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise PackagesMissing(f"Package requirement {text!r} is not valid ({str(exc).splitlines()[0]})",
                              hint="Use pip's syntax, e.g. 'scikit-learn>=1.4' or 'name @ https://…/x.whl'.") from None


def missing(packages: list[str] | tuple[str, ...]) -> list[str]:
    """The requirements in ``packages`` that no installed distribution satisfies.

    A requirement counts as satisfied when a distribution of that name is installed and its
    version is in the specifier (pre-releases allowed); a URL requirement, when the name is
    installed; one whose environment marker does not apply, always.
    """
    lacking: list[str] = []
    for text in packages:
        req = _requirement(text)
        name = req if isinstance(req, str) else req.name
        if not isinstance(req, str) and req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            lacking.append(text)
            continue
        if isinstance(req, str) or req.url:
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            lacking.append(text)
    return lacking


def installs_enabled() -> bool:
    return os.environ.get("NBPIPE_INSTALL_PACKAGES", "1").lower() not in ("0", "false", "no", "off")


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv") or shutil.which("uv", path=os.path.dirname(sys.executable))
        if not found:
            raise PackagesMissing("Installing step packages needs 'uv', which is not installed",
                                  hint="pip install uv (or set NBPIPE_INSTALL_PACKAGES=0 and install them yourself).") from None
        return found


def overlay(packages: list[str], root: Path, log_path: str | None = None) -> str:
    """The Python of a cached overlay environment with ``packages`` on top of this one.

    Built once per (interpreter, requirement set) under ``root`` with ``uv venv`` and
    ``uv pip install``; concurrent callers wait on a file lock; a half-built overlay (the
    marker file is written last) is rebuilt.
    """
    key = hashlib.sha256("\n".join([sys.executable, *sorted(packages)]).encode()).hexdigest()[:16]
    env_dir = root / key
    python = env_dir / "bin" / "python"
    marker = env_dir / ".nbpipe-complete"
    if marker.exists():
        return str(python)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return str(python)
        shutil.rmtree(env_dir, ignore_errors=True)
        out = open(log_path, "ab") if log_path else open(os.devnull, "wb")
        with out:
            out.write(f"nbpipe: installing {', '.join(packages)} into a step environment ({env_dir})\n".encode())
            out.flush()
            t0 = time.time()
            uv = _uv()
            steps = [[uv, "venv", "--quiet", "--system-site-packages", "--python", sys.executable, str(env_dir)],
                     [uv, "pip", "install", "--quiet", "--python", str(python), *packages]]
            for i, cmd in enumerate(steps):
                if i == 1:
                    _link_runner_packages(python)
                proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                if proc.returncode != 0:
                    raise PackagesMissing(
                        f"Installing {', '.join(packages)} failed (uv exited with {proc.returncode})",
                        "see the step log for uv's output.",
                        "Fix the requirement (name, version, index reachable?) or install it into the "
                        "runner's environment yourself.")
            marker.write_text(f"{time.time() - t0:.2f}\n")
            out.write(f"nbpipe: step environment ready in {time.time() - t0:.1f} s\n".encode())
    return str(python)


def _link_runner_packages(python: Path) -> None:
    """Let the overlay import the runner's packages (a ``.pth`` that adds its site dirs)."""
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dirs = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    lines = [f"import site; site.addsitedir({d!r})" for d in dirs]
    Path(site, "_nbpipe_runner_env.pth").write_text("\n".join(lines) + "\n")


def prepare(job: dict[str, Any], root: Path, log_path: str | None = None) -> dict[str, Any]:
    """``job`` ready to run locally: unchanged, or with an overlay's ``python_executable``.

    Raises
    ------
    PackagesMissing
        Packages are lacking and installs are off, or the install failed.
    """
    packages = list(job.get("packages") or [])
    lacking = missing(packages)
    if not lacking:
        return job
    if not installs_enabled():
        raise PackagesMissing(
            f"Step '{job.get('step')}' needs {', '.join(lacking)}, which the runner's environment lacks, "
            "and package installs are off (NBPIPE_INSTALL_PACKAGES=0)",
            hint=f"pip install {' '.join(repr(p) for p in lacking)} where the runner runs, or unset "
                 "NBPIPE_INSTALL_PACKAGES to let nbpipe install them into a cached step environment.")
    return dict(job, python_executable=overlay(lacking, Path(root), log_path))
