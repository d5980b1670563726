"""Step packages: pinned to the kernel, installed once per requirement set, never moving nbpipe's deps.

:func:`nbpipe.component.pin_packages` turns a bare requirement (``scikit-learn``) into the version
the submitting kernel has (``scikit-learn==1.7.2``) when the package is written; a requirement
that already says a version or URL is kept. :func:`missing` says which requirements
the current interpreter does not satisfy, :func:`describe` names the version it has instead.

Installs happen under :func:`constraints`: every distribution the environment already has is
pinned to its installed version (except the ones being asked for), so a step's packages never
move nbpipe's own dependencies (nor anything else the image has); a requirement that would is a
resolver error in the step log. Each requirement set is installed once, under a content-addressed
key (:func:`env_key`: interpreter, requirements, constraints), into a cache:

- locally, :func:`prepare` (called by the runner before a local attempt) builds an overlay
  virtualenv under the runner's data dir with ``uv`` that sees the runner's own packages and
  adds only what was lacking; the step runs with that environment's Python;
- in a pod, :func:`ensure` (called by the entrypoint) installs the lacking requirements with
  ``uv pip install --target`` (``pip`` when ``uv`` is absent) into ``NBPIPE_PACKAGE_CACHE/<key>``
  (the executor's package-cache volume, shared by later pods) and puts it first on ``sys.path``;
  the next pod with the same set finds it complete and installs nothing.

With ``NBPIPE_INSTALL_PACKAGES=0`` nothing is installed and the step fails before it runs,
naming what is missing and the version it found (``NBPIPE_PACKAGE_SKEW=warn``: a version
different from the pinned one is only a warning).

Non-goals: resolving conflicts with the environment's packages (a conflict is an error), removing
old overlays, and extras (``pkg[extra]`` is checked by name and version only).
"""

from __future__ import annotations

import fcntl
import functools
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


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _off(var: str) -> bool:
    return os.environ.get(var, "1").lower() in ("0", "false", "no", "off")


def _found(text: str) -> str | None:
    """The installed version of the distribution ``text`` names, or None."""
    req = _requirement(text)
    try:
        return metadata.version(req if isinstance(req, str) else req.name)
    except metadata.PackageNotFoundError:
        return None


def describe(lacking: list[str]) -> str:
    """``lacking`` with what this environment has instead: ``x==2 (found 1.9)``, ``y (not installed)``."""
    return ", ".join(f"{t} (found {v})" if (v := _found(t)) else f"{t} (not installed)" for t in lacking)


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[tuple[str, str], ...]:
    """(name, version) of every distribution this interpreter imports, the first of each name.

    Read from the ``name-version.dist-info`` folder names on ``sys.path`` (no file is opened: a
    pod with a cached install must not pay for reading 200 METADATA files).
    """
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging is a dependency of nbpipe
        Version, InvalidVersion = str, ValueError  # type: ignore[assignment,misc]
    seen: dict[str, tuple[str, str]] = {}
    for folder in sys.path:
        try:
            entries = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for entry in entries:
            if not entry.endswith((".dist-info", ".egg-info")):
                continue
            name, _, version = entry.rsplit(".", 1)[0].partition("-")
            version = version.split("-")[0]
            if not name or not version or _norm(name) in seen:
                continue
            try:
                Version(version)
            except (InvalidVersion, TypeError):
                continue  # a constraint uv/pip cannot parse would fail every install
            seen[_norm(name)] = (_norm(name), version)
    return tuple(sorted(seen.values()))


def constraints(packages: list[str] | tuple[str, ...]) -> list[str]:
    """Constraint lines keeping every installed distribution at its version, except those asked for.

    So installing a step's packages never moves nbpipe's own dependencies (``python-dateutil<3``,
    ``pandas``, ``cloudpickle``…) nor anything else the image has: a requirement that needs
    another version of one of them fails in the resolver, naming both.
    """
    asked = set()
    for text in packages:
        req = _requirement(text)
        asked.add(_norm(req if isinstance(req, str) else req.name))
    return [f"{n}=={v}" for n, v in _installed() if _norm(n) not in asked]


def env_key(packages: list[str] | tuple[str, ...], cons: list[str]) -> str:
    """The cache key of an install: interpreter, requirement set and the constraints it was made under."""
    ident = [sys.implementation.cache_tag or "", sys.version, os.path.realpath(sys.executable),
             sorted(packages), sorted(cons)]
    return hashlib.sha256(repr(ident).encode()).hexdigest()[:20]


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


def _install_failed(packages: list[str], tool: str, code: int) -> PackagesMissing:
    return PackagesMissing(
        f"Installing {', '.join(packages)} failed ({tool} exited with {code})",
        f"See {tool}'s output in the step log. Installs keep every package the environment already has at "
        "its version (nbpipe's own dependencies included), so a requirement that needs another version of "
        "one of them is refused there.",
        "Fix the requirement (name, version, index reachable?), pin a version that fits the environment, "
        "or use an image that has it (component(base_image=...)).")


def _uv_env(cache: Path | None) -> tuple[dict[str, str], list[str]]:
    """The environment and extra flags for ``uv``: pip's index settings carried over (uv reads only its own)."""
    env = dict(os.environ)
    for pip_var, uv_var in (("PIP_INDEX_URL", "UV_INDEX_URL"), ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL"),
                            ("PIP_FIND_LINKS", "UV_FIND_LINKS"), ("PIP_CERT", "SSL_CERT_FILE")):
        if env.get(pip_var) and not env.get(uv_var):
            env[uv_var] = env[pip_var]
    if cache is not None and not env.get("UV_CACHE_DIR"):
        env["UV_CACHE_DIR"] = str(cache / ".uv-cache")  # on the same volume: uv hardlinks from it
    no_index = env.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes", "on")
    return env, ["--no-index"] if no_index else []


def overlay(packages: list[str], root: Path, log_path: str | None = None) -> str:
    """The Python of a cached overlay environment with ``packages`` on top of this one.

    Built once per :func:`env_key` under ``root`` with ``uv venv`` and ``uv pip install`` under
    :func:`constraints`; concurrent callers wait on a file lock; a half-built overlay (the
    marker file is written last) is rebuilt. Each use touches the marker (see :func:`collect`).
    """
    cons = constraints(packages)
    key = env_key(packages, cons)
    env_dir = root / key
    python = env_dir / "bin" / "python"
    marker = env_dir / ".nbpipe-complete"
    if marker.exists():
        _touch(marker)
        return str(python)
    root.mkdir(parents=True, exist_ok=True)
    collect(root)
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
            env, flags = _uv_env(None)
            cons_file = root / f"{key}.constraints.txt"
            cons_file.write_text("\n".join(cons) + "\n")
            steps = [[uv, "venv", "--quiet", "--system-site-packages", "--python", sys.executable, str(env_dir)],
                     [uv, "pip", "install", "--quiet", "--python", str(python), "-c", str(cons_file), *flags, *packages]]
            for i, cmd in enumerate(steps):
                if i == 1:
                    _link_runner_packages(python)
                proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
                if proc.returncode != 0:
                    raise _install_failed(packages, "uv", proc.returncode)
            marker.write_text(f"{time.time() - t0:.2f}\n")
            out.write(f"nbpipe: step environment ready in {time.time() - t0:.1f} s\n".encode())
    return str(python)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def collect(root: Path, max_age: float | None = None, max_bytes: int | None = None) -> list[str]:
    """Remove overlays unused for ``max_age`` seconds, then the least recently used above ``max_bytes``.

    Defaults: ``NBPIPE_ENV_MAX_AGE_DAYS`` (14) and ``NBPIPE_ENV_MAX_GB`` (20). An overlay's age
    is its marker's mtime (touched on every use); one being built (no marker yet) is never
    removed. Returns the keys removed.
    """
    if max_age is None:
        max_age = float(os.environ.get("NBPIPE_ENV_MAX_AGE_DAYS", "14")) * 86400
    if max_bytes is None:
        max_bytes = int(float(os.environ.get("NBPIPE_ENV_MAX_GB", "20")) * 2**30)
    envs = []
    for marker in root.glob("*/.nbpipe-complete"):
        try:
            envs.append((marker.stat().st_mtime, marker.parent))
        except OSError:
            continue
    envs.sort()
    now = time.time()
    removed: list[str] = []
    sizes = {d: sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and not f.is_symlink()) for _, d in envs}
    total = sum(sizes.values())
    for mtime, d in envs:
        if now - mtime > max_age or total > max_bytes:
            shutil.rmtree(d, ignore_errors=True)
            for extra in (root / f"{d.name}.lock", root / f"{d.name}.constraints.txt"):
                extra.unlink(missing_ok=True)
            total -= sizes[d]
            removed.append(d.name)
    return removed


def install_target(packages: list[str], root: Path) -> str:
    """A folder holding ``packages`` (installed once per :func:`env_key` under ``root``), for ``sys.path``.

    For step pods: ``root`` is the package cache (a volume later pods mount). Installs with
    ``uv pip install --target`` (``pip`` when ``uv`` is absent) under :func:`constraints` into a
    folder of this process, then renames it into place, so a folder under its key is always
    complete and two pods installing the same set at once both succeed (the second rename loses
    and its copy is dropped). Output goes to this process's stdout (the step log).
    """
    cons = constraints(packages)
    key = env_key(packages, cons)
    final = root / key
    if (final / ".nbpipe-complete").exists():
        print(f"nbpipe: packages {', '.join(packages)} from the package cache ({final})", flush=True)
        return str(final)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{os.uname().nodename}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    cons_file = tmp / ".nbpipe-constraints.txt"
    cons_file.write_text("\n".join(cons) + "\n")
    print(f"nbpipe: installing {len(packages)} package(s) for this step: {' '.join(packages)} "
          f"(into the package cache {final})", flush=True)
    t0 = time.time()
    try:
        uv: str | None = _uv()
    except PackagesMissing:
        uv = None
    if uv:
        env, flags = _uv_env(root)
        cmd = [uv, "pip", "install", "--quiet", "--python", sys.executable, "--target", str(tmp),
               "-c", str(cons_file), *flags, *packages]
    else:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
               "--target", str(tmp), "-c", str(cons_file), *packages]
        env = dict(os.environ, PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or str(root / ".pip-cache"))
    sys.stdout.flush()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _install_failed(packages, "uv" if uv else "pip", proc.returncode)
    compile_bytecode(tmp, final)
    (tmp / ".nbpipe-complete").write_text(f"{time.time() - t0:.2f}\n")
    try:
        os.rename(tmp, final)
    except OSError:  # another pod put the same set in place first: use it
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"nbpipe: packages installed in {time.time() - t0:.1f} s", flush=True)
    return str(final)


def compile_bytecode(folder: Path, final: Path) -> None:
    """Compile ``folder``'s modules (all cores) as if they were at ``final``, where they will be imported.

    Every later pod then imports them from ``.pyc`` files instead of compiling pandas or
    scikit-learn again in memory (a read-only or busy cache volume is never written by importers);
    the recorded paths are ``final``'s, so tracebacks through the packages show their source.
    Failures (a file that does not compile) do not fail the install: Python compiles those on import.
    """
    cmd = [sys.executable, "-m", "compileall", "-q", "-j", "0", "-s", str(folder), "-p", str(final), str(folder)]
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure(packages: list[str], component: str = "", cache: str | None = None) -> str | None:
    """Make ``packages`` importable in this process (a step pod), installing what is lacking.

    Nothing to do when the environment satisfies them (the image has the pinned versions).
    Otherwise, with installs on and a package cache (``cache`` or ``NBPIPE_PACKAGE_CACHE``),
    :func:`install_target` and put the folder first on ``sys.path`` (and ``PYTHONPATH``, for
    processes the step starts). Returns that folder, or ``None``.

    Raises
    ------
    PackagesMissing
        Naming each lacking requirement and the version found instead, when installs are off
        (unless ``NBPIPE_PACKAGE_SKEW=warn`` or ``off`` and only versions differ) or the install failed.
    """
    lacking = missing(packages)
    if not lacking:
        return None
    cache = cache or os.environ.get("NBPIPE_PACKAGE_CACHE") or ""
    who = f"Component '{component}'" if component else "This step"
    if not installs_enabled() or not cache:
        skew = os.environ.get("NBPIPE_PACKAGE_SKEW", "error").strip().lower()  # (also nbpipe.pins' policy)
        if all(_found(t) for t in lacking) and skew in ("warn", "off"):
            if skew == "warn":
                print(f"nbpipe: warning: {who} was defined with {describe(lacking)}; running with the "
                      "versions found (NBPIPE_PACKAGE_SKEW=warn)", file=sys.stderr, flush=True)
            return None
        raise PackagesMissing(
            f"{who} needs {describe(lacking)} in this environment ({sys.executable}), and package installs "
            "are off (NBPIPE_INSTALL_PACKAGES=0)" if not installs_enabled() else
            f"{who} needs {describe(lacking)} in this environment ({sys.executable}), and no package cache "
            "is set (NBPIPE_PACKAGE_CACHE)",
            hint="Use an image with these versions (component(base_image=...)), turn installs on, or set "
                 "NBPIPE_PACKAGE_SKEW=warn to run with the versions found.")
    import importlib

    target = install_target(lacking, Path(cache))
    sys.path.insert(0, target)
    os.environ["PYTHONPATH"] = target + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    importlib.invalidate_caches()
    still = missing(packages)
    if still:
        raise PackagesMissing(f"{who} still lacks {describe(still)} after installing it into {target}",
                              hint="Check the requirement's name and version in the step log above.")
    return target


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
