"""Build a package from selected notebook code in a fresh Python process, never in the kernel.

The parent (:func:`build_in_fresh_process`) writes a :class:`~nbpipe.export.notebook.Program`
as JSON and starts ``python -m nbpipe.export.builder PROGRAM OUTDIR`` in the notebook's folder.
The child runs each chunk in a clean ``__main__`` module, compiled with a stable file name per
cell (``<nbpipe-cell-4>``), so cloudpickle captures notebook functions by value exactly as in
a kernel but with the same bytes in every process. Two more things keep the bytes stable:
``PYTHONHASHSEED=0`` (set iteration order inside pickles) and tracker ids for notebook-defined
classes derived from the program's digest instead of cloudpickle's random ``uuid4``.
The child writes ``package.nbpipe`` or ``error.json`` (headline, detail, hint, cell) to OUTDIR.

Non-goals: sandboxing (the kept cells are the user's own code and run with their rights);
running cells that the selection left out.
"""

from __future__ import annotations

import ast
import hashlib
import json
import linecache
import os
import subprocess
import sys
import tempfile
import traceback
import types
from pathlib import Path
from typing import Any

from ..sourcemap import name_cell
from .errors import ExportError, where

TIMEOUT = float(os.environ.get("NBPIPE_EXPORT_TIMEOUT", 300))


# ---------------------------------------------------------------- parent side


def build_in_fresh_process(program: Any, cwd: str | os.PathLike[str] | None = None,
                           python: str | None = None, timeout: float = TIMEOUT) -> bytes:
    """Run ``program`` in a new interpreter and return the package bytes.

    Parameters
    ----------
    program : Program
        The selected code (see :func:`nbpipe.export.notebook.select_program`).
    cwd : path, optional
        Folder to run in (the notebook's, so its local modules import).
    python : str, optional
        Interpreter to use (default: this one, ``sys.executable``).
    timeout : float
        Seconds before the build is stopped.

    Raises
    ------
    ExportError
        A kept cell failed (named with its cell number), or the process crashed or timed out.
    """
    with tempfile.TemporaryDirectory(prefix="nbpipe-export-") as tmp:
        prog_path = Path(tmp, "program.json")
        prog_path.write_text(json.dumps(program.to_json()), encoding="utf-8")
        env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
        # The child must import this very nbpipe even when run from the notebook's folder.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        cmd = [python or sys.executable, "-m", "nbpipe.export.builder", str(prog_path), tmp]
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ExportError(f"Building the package from {program.notebook} took over {timeout:.0f} s",
                              "A kept cell may do heavy work at definition time.",
                              "Tag that cell nbpipe:skip, or raise NBPIPE_EXPORT_TIMEOUT.") from None
        err = Path(tmp, "error.json")
        if err.exists():
            e = json.loads(err.read_text(encoding="utf-8"))
            raise ExportError(e["headline"], e.get("detail", ""), e.get("hint", ""), cell=e.get("cell"))
        out = Path(tmp, "package.nbpipe")
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise ExportError(f"The export process for {program.notebook} failed (exit code {proc.returncode})",
                              tail, "Run the notebook top to bottom in a fresh kernel to find the problem.")
        return out.read_bytes()


# ---------------------------------------------------------------- child side


class _StableIds:
    """Stands in for :mod:`uuid` inside cloudpickle: class tracker ids from the program digest.

    cloudpickle names each notebook-defined class with ``uuid.uuid4().hex`` so a process can
    tell classes apart; a fresh random id per export would change the package bytes. The
    same program defines its classes in the same order, so ``digest + counter`` is stable,
    and different programs still get different ids.
    """

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.count = 0

    def uuid4(self) -> types.SimpleNamespace:
        self.count += 1
        return types.SimpleNamespace(hex=hashlib.sha256(f"{self.seed}:{self.count}".encode()).hexdigest()[:32])


class _Failed(Exception):
    def __init__(self, headline: str, detail: str = "", hint: str = "", cell: int | None = None) -> None:
        super().__init__(headline)
        self.payload = {"headline": headline, "detail": detail, "hint": hint, "cell": cell}


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame in notebook code on (builder frames trimmed)."""
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, f in enumerate(frames) if f.filename.startswith("<nbpipe-")), 0)
    lines = traceback.format_list(frames[first:]) + traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _run_chunk(chunk: dict[str, Any], namespace: dict[str, Any], shell: Any) -> None:
    from ..errors import NbpipeError

    cell, filename, source = chunk["cell"], chunk["filename"], chunk["source"]
    label = where(cell)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    name_cell(filename, cell)  # step tracebacks say Cell In[<cell>], not the file name
    tree = ast.parse("" if chunk.get("magic") else source, filename)
    if chunk.get("keep") is not None:
        tree.body = [tree.body[i] for i in chunk["keep"]]
    try:
        if chunk.get("magic"):
            shell.execution_count = cell  # IPython files the cell's code under Cell In[<cell>], not In[0]
            result = shell.run_cell(source, store_history=False, silent=True)
            if not result.success:
                raise result.error_before_exec or result.error_in_exec
        else:
            exec(compile(tree, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - the user's own cells
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        raise _Failed(f"{label.capitalize()} imports '{exc.name}', which is not installed",
                      f"Export runs the kept cells with {sys.executable}.",
                      f"Install it there (pip install {missing}), or drop the import if no component needs it.",
                      cell) from None
    except NbpipeError as exc:
        raise _Failed(f"{label.capitalize()}: {exc.headline}", exc.detail, exc.hint, cell) from None
    except Exception as exc:
        if not (chunk.get("magic") and _refused_magic_line(exc)):
            raise _Failed(*_failed_in_cell(label, exc), cell) from None
        # a %%component/%%pipeline line the magic refused: its own message (options, what to do), as the
        # kernel shows it, not the frames of IPython and nbpipe that raised it
        first, _, rest = str(exc).partition("\n")
        raise _Failed(f"{label.capitalize()}: {first}", rest.strip(),
                      "Fix the cell's magic line (the message says what is wrong), or tag the cell nbpipe:skip.",
                      cell) from None
    except BaseException as exc:  # noqa: BLE001 - any failure of user code is reported with its cell
        raise _Failed(*_failed_in_cell(label, exc), cell) from None


def _refused_magic_line(exc: BaseException) -> bool:
    from IPython.core.error import UsageError  # (only magic cells get here: IPython runs them)

    return isinstance(exc, UsageError)


def _failed_in_cell(label: str, exc: BaseException) -> tuple[str, str, str]:
    return (f"{label.capitalize()} failed during export: {type(exc).__name__}: {exc}", _user_traceback(exc),
            "Fix that cell (it is kept because the pipeline needs what it defines), or tag it nbpipe:skip.")


def build(program: dict[str, Any]) -> bytes:
    """Run a program's chunks in a fresh ``__main__`` and package its pipeline (child side)."""
    import cloudpickle.cloudpickle as cp_impl

    from ..package import build_package
    from ..pipeline import Pipeline

    seed = hashlib.sha256(json.dumps(program, sort_keys=True).encode()).hexdigest()
    cp_impl.uuid = _StableIds(seed)  # type: ignore[attr-defined]
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    shell = None
    if program.get("magics"):
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance(user_module=main)
        try:
            shell.run_line_magic("load_ext", "nbpipe")
        except ImportError as exc:
            raise _Failed("The notebook has %%component/%%pipeline cells, but nbpipe's magics do not load",
                          str(exc), "Install nbpipe with its kernel magics, or use @nbpipe.component.") from None
    steps: list[tuple[int, Any]] = []  # plain %%component cells: (cell number, CellComponent)
    for chunk in program["chunks"]:
        if chunk.get("plain") is not None:
            from .plain_build import make_component

            steps.append((chunk["cell"], make_component(chunk, main.__dict__)))
            continue
        _run_chunk(chunk, main.__dict__, shell)
    name = program["pipeline"]
    if program.get("inferred"):
        from .plain_build import infer

        return build_package(infer(name, steps, main.__dict__))
    pipe = main.__dict__.get(name)
    if not isinstance(pipe, Pipeline):
        raise _Failed(f"After running the kept cells, '{name}' is a {type(pipe).__name__}, not an nbpipe pipeline",
                      hint=f"Decorate '{name}' with @nbpipe.pipeline.")
    return build_package(pipe)


def main(argv: list[str] | None = None) -> int:
    """``python -m nbpipe.export.builder PROGRAM.json OUTDIR``."""
    args = sys.argv[1:] if argv is None else argv
    program = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    out = Path(args[1])
    try:
        data = build(program)
    except _Failed as exc:
        (out / "error.json").write_text(json.dumps(exc.payload), encoding="utf-8")
        return 2
    (out / "package.nbpipe").write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
