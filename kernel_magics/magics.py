"""``%%component``, ``%%pipeline`` and ``%nbpipe``: thin adapters from notebook cells to the SDK.

The cell analysis lives in :mod:`kernel_magics.cells`, the building of components and pipelines
in :mod:`kernel_magics.cell_component`, running and watching in :mod:`nbpipe.client` and
:mod:`nbpipe.widgets`. This module parses arguments, runs cells in the kernel, pushes results
into the user namespace and turns every mistake into a one-line ``UsageError`` that says what
to do.

Non-goals: any logic another front end (the Lab panel, the exporter) would need; that belongs
in the pure modules above.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import keyword
import re
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from nbpipe.component import Component, Options, make_options
from nbpipe.errors import NbpipeError
from nbpipe.pipeline import Pipeline
from nbpipe.signature import is_json_value

from .cell_component import (BindAfterDef, CellComponent, DefRefused, component_from_cell, infer_pipeline,
                             pipeline_from_cell, quiet_refusal, unsafe_read)
from .cells import CellFlow, analyze_cell, classify_reads
from .commands import NbpipeCommands
from .refused import no_steps_note, refused_function
from .suggest import parse_magic_args


def _names(value: str | None) -> tuple[str, ...] | None:
    """``"a, b"`` → ``("a", "b")``; None stays None."""
    if value is None:
        return None
    return tuple(n.strip() for n in value.replace(" ", ",").split(",") if n.strip())


def _packages(value: str | None) -> tuple[str, ...] | None:
    """``"pandas >= 2, numpy"`` → ``("pandas>=2", "numpy")``: commas (or spaces) between requirements, a
    version constraint stays with its name."""
    if value is None:
        return None
    glued = re.sub(r"\s*([<>=!~]=?|===?)\s*", r"\1", value)
    return _names(glued)


def _override(
    wanted: tuple[str, ...] | None,
    default: tuple[str, ...],
    allowed: tuple[str, ...],
    option: str,
    verb: str,
    fix: str,
) -> tuple[str, ...]:
    """The names an --inputs/--outputs option lists, each checked against what the cell does."""
    if wanted is None:
        return default
    for n in wanted:
        if n not in allowed:
            raise UsageError(f"{option} lists '{n}', which the cell never {verb}; {fix}.")
    return wanted


def _pipeline_functions(cell: str) -> set[str]:
    """Names of the functions a cell decorates with ``@pipeline`` / ``@nbpipe.pipeline(...)``."""
    try:
        tree = ast.parse(cell)
    except SyntaxError:
        return set()
    found = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                if name == "pipeline":
                    found.add(node.name)
    return found


def usage(exc: NbpipeError) -> UsageError:
    """An SDK error as the one-line error IPython shows without a traceback."""
    return UsageError(exc.message)


def _trace_error(exc: Exception, plain: list[str], filename: str = "<nbpipe-cell-") -> str:
    """What a ``%%pipeline`` cell that raised while composing says: its line, the error and, when it
    calls plain functions (a cell without %%component), that those are no steps."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(filename):
            line = tb.tb_lineno + 1  # +1: the editor counts the %%pipeline line
        tb = tb.tb_next
    where = f" on line {line}" if line else ""
    text = f"The pipeline cell raised {type(exc).__name__}{where}: {exc}."
    if plain:
        names = ", ".join(f"'{n}'" for n in plain)
        text += (f" It calls {names}: plain function{'s' * (len(plain) > 1)}, not components, so "
                 "the call ran in the kernel; make each a component (%%component, or @nbpipe.component).")
    return text


@magics_class
class NbpipeMagics(Magics):
    """The nbpipe magics. ``%load_ext nbpipe`` registers them."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.cells: list[CellComponent] = []  # plain-cell components, in cell order
        # plain %%component cells whose last run failed (key -> component name): the notebook's
        # pipeline has no current version of them, so inferring one refuses until they are fixed
        self.failed: dict[str, str] = {}
        self._order: list[str] = []  # keys of those cells and of the failed ones, in first-run order
        # function %%component cells refused (def name -> why): the def is a plain function there, and a
        # %%pipeline calling it would run it in the kernel; it says this reason instead
        self.refused: dict[str, str] = {}
        self.commands = NbpipeCommands(shell, self)
        self._cell_id: str | None = None
        shell.events.register("pre_run_cell", self._pre_run_cell)

    def _pre_run_cell(self, info: Any) -> None:
        # The frontend's cell id (JupyterLab sends it) identifies a cell across re-runs.
        self._cell_id = getattr(info, "cell_id", None)
        raw = getattr(info, "raw_cell", None)
        if self._cell_id and isinstance(raw, str) and not raw.lstrip().startswith("%%component"):
            # a plain-cell component whose cell lost its %%component is no step any more
            self.failed.pop(self._cell_id, None)
            self.cells = [c for c in self.cells if c.key != self._cell_id]
            self._order = [k for k in self._order if k != self._cell_id]

    def unregister(self) -> None:
        """Stop listening to cell events (``%unload_ext nbpipe``)."""
        self.shell.events.unregister("pre_run_cell", self._pre_run_cell)

    # ------------------------------------------------------------------ helpers

    @property
    def _ns(self) -> dict[str, Any]:
        return self.shell.user_ns

    def _flow(self, cell: str) -> tuple[str, CellFlow]:
        source = self.shell.transform_cell(cell)
        try:
            return source, analyze_cell(source)
        except SyntaxError as exc:
            raise UsageError(
                # +1: the editor counts the %%component line, the cell body starts after it
                f"The cell has a syntax error (line {(exc.lineno or 0) + 1}: {exc.msg}); fix it and run the "
                "cell again."
            ) from None

    def _run_cell(self, cell: str, what: str) -> None:
        """Run the cell normally in the kernel; its own error shows above ours.

        The cell's code is filed under this cell's number, so tracebacks (in the kernel and in
        steps) say ``Cell In[N]`` for the cell the user sees; IPython 9 would file a nested run
        under the next number.
        """
        shell = self.shell
        count, cell_id = shell.execution_count, self._cell_id
        shell.execution_count = self._cell_number()
        try:
            result = shell.run_cell(cell, store_history=False)
        finally:
            # the nested run's pre_run_cell saw no cell id: this cell's id still applies
            shell.execution_count, self._cell_id = count, cell_id
        if not result.success:
            raise UsageError(
                f"The cell failed (see the error above), so {what} was not created; "
                "fix the cell and run it again."
            )

    def _cell_number(self) -> int:
        """The number of the cell running this magic (``In[N]``), in IPython 8 and 9 alike."""
        count = int(self.shell.execution_count)
        hist = getattr(getattr(self.shell, "history_manager", None), "input_hist_raw", None)
        # In[0] is no cell: export's shell keeps no history
        if hist and len(hist) > 1 and len(hist) - 1 in (count - 1, count):
            return len(hist) - 1
        return count

    def _file_under_this_cell(self, filename: str) -> None:
        """Tracebacks of code compiled from ``filename`` say ``Cell In[N]``, N being this cell."""
        names = getattr(getattr(self.shell, "compile", None), "_filename_map", None)
        if isinstance(names, dict):
            names[filename] = self._cell_number()

    @staticmethod
    def _options(args: Any) -> Options:
        timeout: Any = args.timeout
        if timeout is not None:
            try:
                timeout = float(timeout)
            except ValueError:
                pass  # ISO 8601 like PT30M; make_options checks it
        try:
            return make_options(
                base_image=args.image,
                packages=list(_packages(args.packages) or ()) or None,
                cpu=args.cpu,
                memory=args.memory,
                gpu=args.gpu,
                retries=args.retries,
                timeout=timeout,
                cache=False if args.no_cache else None,
                workers=getattr(args, "workers", None),
                kubeflow_job=True if getattr(args, "kubeflow_job", False) else None,
                owner=f"component {args.name or ''}".strip(),
            )
        except NbpipeError as exc:
            raise usage(exc) from None

    def _check_name(self, name: str, what: str) -> None:
        if not name.isidentifier() or keyword.iskeyword(name):
            fixed = re.sub(r"\W", "_", name)
            fixed = f"{what.lower()}_{fixed}" if not fixed.isidentifier() or keyword.iskeyword(fixed) else fixed
            raise UsageError(
                f"{what} name {name!r} becomes a notebook variable, so it must be a Python "
                f"identifier; try %%{what.lower()} {fixed}."
            )

    # ------------------------------------------------------------------ %%component

    @magic_arguments()
    @argument(
        "name",
        nargs="?",
        help="Component name; becomes a variable in the notebook "
        "(default: the function's name, or cell_<N> for a plain cell).",
    )
    @argument("--image", help="Container image for Kubernetes runs (default: the nbpipe base image).")
    @argument("--packages", help="Comma-separated pip requirements installed before the step runs.")
    @argument("--cpu", help="CPU request, e.g. 2 or 500m.")
    @argument("--memory", help="Memory request, e.g. 2Gi.")
    @argument("--gpu", type=int, help="Number of GPUs.")
    @argument("--retries", type=int, help="Times to retry a failed step.")
    @argument("--timeout", help="Seconds (or ISO 8601 like PT30M) before the step is killed.")
    @argument("--no-cache", action="store_true", help="Always run; never reuse an earlier result.")
    @argument("--workers", type=int, help="Run the step as N processes started together (torch.distributed).")
    @argument("--kubeflow-job", action="store_true",
              help="With --workers N on Kubernetes: run them as a Training Operator PyTorchJob.")
    @argument(
        "--inputs",
        help="Plain cell only: comma-separated notebook variables the step takes "
        "(default: the earlier cells' variables the cell reads).",
    )
    @argument(
        "--outputs",
        help="Plain cell only: comma-separated variables the step returns "
        "(default: every non-private name the cell assigns).",
    )
    @cell_magic
    def component(self, line: str, cell: str) -> None:
        """Turn this cell into a pipeline component.

        A cell with a ``def``: the function becomes the component. A plain cell: the cell
        body becomes a component whose inputs are the earlier cells' variables it reads and
        whose outputs are the variables it assigns (``--inputs``/``--outputs`` override).
        Either way the cell also runs normally, so the notebook keeps working top to bottom.
        """
        args = parse_magic_args(NbpipeMagics.component, line, "%%component")
        options = self._options(args)
        if args.name is not None:
            self._check_name(args.name, "Component")
        source, flow = self._flow(cell)
        if not flow.functions and not flow.has_work:
            raise UsageError(
                "This cell has no function and only imports or sets constants, so it makes no "
                "step: write the def that is the component, or drop %%component (plain JSON "
                "constants become pipeline parameters)."
            )
        if flow.is_function_cell:
            self._function_cell(args, cell, flow, options)
        else:
            self._plain_cell(args, cell, source, flow, options)

    def _function_cell(self, args: Any, cell: str, flow: CellFlow, options: Options) -> None:
        if args.inputs is not None or args.outputs is not None:
            raise UsageError(
                "--inputs/--outputs are for plain cells; a function's parameters and return "
                "annotation are its inputs and outputs."
            )
        self._drop_plain_step(args.name)
        funcs = flow.functions
        candidates = [f for f in funcs if f not in _pipeline_functions(cell)] or list(funcs)
        if args.name in funcs or len(candidates) == 1:
            fname = args.name if args.name in funcs else candidates[0]
        elif args.name is None:
            raise UsageError(
                f"This cell defines {len(funcs)} functions ({', '.join(funcs)}); say which one is "
                f"the component: %%component {candidates[-1]}"
            )
        else:
            raise UsageError(
                f"This cell defines {len(funcs)} functions ({', '.join(funcs)}) and none is named "
                f"{args.name!r}; use one of them as NAME."
            )
        name = args.name or fname
        made: dict[str, Any] = {}
        stop = bool(_pipeline_functions(cell))  # a @pipeline below must not trace the plain function

        def make(func: Any) -> Any:
            try:
                made["comp"] = Component(func.func if isinstance(func, Component) else func,  # @component'd
                                         name=name, options=options, source=cell, variable=name)
            except NbpipeError as exc:
                made["error"] = exc
                if stop:  # the cell stops here, silently: the message shows once, as the UsageError below
                    raise DefRefused(name) from None
                return func
            return made["comp"]

        # the component is made right after its def runs, before the rest of the cell
        hook = "__nbpipe_component__"
        # with a @pipeline in the cell, a renamed def's own name is the component too: the pipeline calls it
        binder = BindAfterDef(fname, f"{name} = {fname}" if stop and name != fname else name, hook)
        self._ns[hook] = make
        self.shell.ast_transformers.append(binder)
        try:
            with quiet_refusal(self.shell):
                self._run_cell(cell, f"component '{name}'")
        except UsageError:
            if "error" in made:
                raise self._refuse((name, fname), made["error"]) from None
            raise
        finally:
            self.shell.ast_transformers.remove(binder)
            self._ns.pop(hook, None)
        if "comp" not in made and "error" not in made:  # the def did not run at the cell's top level
            try:
                make(self._ns[fname])
            except (NbpipeError, DefRefused):
                pass  # kept in made["error"]
        if "error" in made:
            raise self._refuse((name, fname), made["error"]) from None
        for n in (name, fname):
            self.refused.pop(n, None)
        self.shell.push({name: made["comp"]})

    def _refuse(self, names: tuple[str, ...], exc: NbpipeError) -> UsageError:
        for n in names:
            self.refused[n] = exc.message
            if inspect.isfunction(self._ns.get(n)):  # a pipeline traced later must not run it as no step
                self._ns[n] = refused_function(self._ns[n], n, exc.message)
        return usage(exc)

    def _drop_plain_step(self, name: str | None) -> None:
        """This cell now holds a ``def``: the plain-cell step it was (if any) leaves the notebook's
        pipeline and namespace; the cell keeps its place, should it become a plain cell again."""
        key = self._cell_id or (f"name:{name}" if name else None)
        if key is None:
            return
        self.failed.pop(key, None)
        for old in [c for c in self.cells if c.key == key]:
            if self._ns.get(old.component.name) is old.component:
                del self._ns[old.component.name]
        self.cells = [c for c in self.cells if c.key != key]

    def _plain_cell(self, args: Any, cell: str, source: str, flow: CellFlow, options: Options) -> None:
        if flow.uses_ipython:
            raise UsageError(
                "This cell uses magics or !commands, which only run in the notebook, not in a "
                "step; move them to another cell."
            )
        if flow.has_await:
            raise UsageError(
                "This cell uses top-level await, which a step cannot run; call asyncio.run(...) "
                "inside the cell instead."
            )
        key = self._cell_id or (
            f"name:{args.name}" if args.name else "source:" + hashlib.sha256(cell.encode()).hexdigest()
        )
        # an unnamed cell is named by its place in the saved notebook, as export and the Lab panel
        # name it (so their re-runs of this kernel's runs find its step); a cell the file does not
        # hold yet keeps the name its first run gave it
        kept = next((c.component.name for c in self.cells if c.key == key), None) or self.failed.get(key)
        name = args.name or self._saved_cell_name() or kept or f"cell_{self.shell.execution_count}"
        if not args.name:  # a default name never takes another cell's step
            taken = {c.component.name for c in self.cells if c.key != key} | {
                n for k, n in self.failed.items() if k != key}
            base, i = name, 2
            while name in taken:
                name, i = f"{base}_{i}", i + 1
        try:
            self._plain_cell_component(args, cell, source, flow, options, key, name)
        except UsageError:
            self._forget(key, name)
            raise

    def _saved_cell_name(self) -> str | None:
        """``cell_<N>``, N being this cell's 1-based place in the saved notebook (markdown cells count)."""
        path = self.commands._notebook_path() if self._cell_id else None
        if not path:
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                cells = json.load(fh).get("cells", [])
        except (OSError, ValueError, AttributeError):
            return None
        for number, saved in enumerate(cells, start=1):
            if isinstance(saved, dict) and saved.get("id") == self._cell_id:
                return f"cell_{number}"
        return None

    def _plain_cell_component(self, args: Any, cell: str, source: str, flow: CellFlow, options: Options,
                              key: str, name: str) -> None:
        reads = classify_reads(flow.reads, self._ns, hidden=self.shell.user_ns_hidden)
        if reads.missing:
            raise UsageError(
                f"The cell reads '{reads.missing[0]}', which no earlier cell defines (and it is not "
                "a builtin); run the cell that defines it first, or define it in this cell."
            )
        inputs = _override(
            _names(args.inputs),
            reads.data,
            flow.reads,
            "--inputs",
            "reads before assigning it",
            "list only the notebook variables the cell uses",
        )
        for n in inputs:
            if n not in self._ns:
                raise UsageError(f"--inputs lists '{n}', which no earlier cell defines; run that cell first.")
        outputs = _override(
            _names(args.outputs),
            flow.outputs,
            flow.assigned,
            "--outputs",
            "assigns",
            f"list names the cell assigns ({', '.join(flow.assigned) or 'none'})",
        )
        if name in flow.assigned or name in inputs:
            raise UsageError(
                f"Component name '{name}' is also a variable of the cell; pick another name, "
                f"e.g. %%component make_{name}"
            )
        produced = {o for c in self.cells if c.component.name != name for o in c.outputs}
        for n in inputs:
            unsafe = unsafe_read(name, n, self._ns.get(n)) if n not in produced else None
            if unsafe is not None:  # refused before the cell runs, as @component refuses its def
                raise usage(unsafe) from None
        self._run_cell(cell, f"component '{name}'")
        try:
            comp = component_from_cell(name, source, cell, inputs, outputs, self._ns, options)
            self._file_under_this_cell(comp.func.__code__.co_filename)
        except NbpipeError as exc:
            raise usage(exc) from None
        self._remember(CellComponent(key, comp, tuple(inputs), tuple(outputs)))
        self.shell.push({name: comp})

    def _forget(self, key: str, name: str) -> None:
        """This plain cell failed: its earlier component (if any) is stale, so it leaves the notebook's
        pipeline and namespace, and inferring the pipeline refuses until the cell runs again. The
        cell keeps its place in the cell order, so its fixed version goes back where it was."""
        stale = [c for c in self.cells if c.key == key or c.component.name == name]
        for old in stale:
            if self._ns.get(old.component.name) is old.component:
                del self._ns[old.component.name]
        self._place(key, [c.key for c in stale])
        self.cells = [c for c in self.cells if c not in stale]
        self.failed[key] = name

    def _place(self, key: str, replaced: list[str]) -> None:
        """Give the cell ``key`` the place of the first cell it replaces, or the next place."""
        at = [self._order.index(k) for k in replaced if k in self._order]
        if key not in self._order:
            if at:
                self._order[min(at)] = key
            else:
                self._order.append(key)
        self._order = [k for k in self._order if k == key or k not in replaced]

    def _remember(self, entry: CellComponent) -> None:
        """Keep plain-cell components in cell order; a re-run cell keeps its place."""
        self.failed = {k: n for k, n in self.failed.items() if k != entry.key and n != entry.component.name}
        replaced = [c.key for c in self.cells if c.key == entry.key or c.component.name == entry.component.name]
        self._place(entry.key, replaced)
        self.cells = [c for c in self.cells if c.key not in replaced] + [entry]
        self.cells.sort(key=lambda c: self._order.index(c.key))

    def notebook_pipeline(self, name: str = "notebook") -> Pipeline:
        """The pipeline inferred from this notebook's plain-cell components."""
        if self.failed:
            names = ", ".join(f"'{n}'" for n in self.failed.values())
            one = len(self.failed) == 1
            raise UsageError(
                f"The %%component cell{'' if one else 's'} of {names} failed when {'it' if one else 'they'} "
                f"last ran, so the notebook's pipeline has no current version of {'it' if one else 'them'}; "
                "fix the cell and run it again (or remove %%component from it and run it)."
            )
        try:
            return infer_pipeline(name, self.cells, self._ns)
        except NbpipeError as exc:
            raise usage(exc) from None

    # ------------------------------------------------------------------ %%pipeline

    @magic_arguments()
    @argument(
        "name", nargs="?", help="Pipeline name; becomes a variable in the notebook (default: the def's "
        "name, or notebook)."
    )
    @cell_magic
    def pipeline(self, line: str, cell: str) -> None:
        """Compose components: the cell's component calls become a pipeline.

        Notebook variables of plain JSON types the cell reads become the pipeline's parameters,
        with their current values as defaults. The cell itself does not run in the kernel.
        """
        args = parse_magic_args(NbpipeMagics.pipeline, line, "%%pipeline")
        if args.name is not None:
            self._check_name(args.name, "Pipeline")
        source, flow = self._flow(cell)
        if flow.is_function_cell and not _pipeline_functions(cell):
            return self._pipeline_def(args.name, cell, flow)  # the cell is the pipeline function, as @pipeline's
        args.name = args.name or "notebook"
        reads = classify_reads(flow.reads, self._ns, hidden=self.shell.user_ns_hidden)
        if reads.missing:
            raise UsageError(
                f"The pipeline reads '{reads.missing[0]}', which no earlier cell defines; define it "
                "(a component, or a plain JSON parameter value) in an earlier cell."
            )
        params: dict[str, Any] = {}
        for n in reads.data:
            if not is_json_value(self._ns[n]):
                raise UsageError(
                    f"The pipeline reads '{n}' ({type(self._ns[n]).__name__}) from the notebook, but "
                    "pipeline parameters must be plain JSON values; make it inside a component."
                )
            params[n] = self._ns[n]
        plain = self._plain_functions(reads.code)
        try:
            pipe = pipeline_from_cell(args.name, source, params, self._ns)
        except NbpipeError as exc:
            raise UsageError(exc.message + no_steps_note(exc, plain)) from None
        except Exception as exc:  # the cell's own code: one line naming the cell's line, no magic frames
            raise UsageError(_trace_error(exc, plain)) from None
        self.shell.push({args.name: pipe})

    def _plain_functions(self, names: Any) -> list[str]:
        """The plain functions (no components) among the names a pipeline cell calls; one whose
        %%component cell failed is refused: the pipeline would call it in the kernel, as no step."""
        plain = [n for n in names if inspect.isfunction(self._ns[n])]
        for n in plain:
            if n in self.refused:
                raise UsageError(
                    f"The pipeline calls '{n}', whose %%component cell failed, so '{n}' is a plain "
                    f"function and no step: {self.refused[n]} Fix that cell, run it, then this one."
                )
        return plain

    def _pipeline_def(self, name: str | None, cell: str, flow: CellFlow) -> None:
        """A ``%%pipeline`` cell holding the pipeline's ``def``: the def runs, then is traced as
        ``@pipeline`` traces it (its parameters are the pipeline's), named NAME or by the def."""
        funcs = flow.functions
        if name in funcs or len(funcs) == 1:
            fname = name if name in funcs else funcs[0]
        else:
            raise UsageError(
                f"This cell defines {len(funcs)} functions ({', '.join(funcs)}); say which one is the "
                f"pipeline: %%pipeline {funcs[-1]}"
            )
        plain = self._plain_functions([n for n in flow.reads if n in self._ns])
        self._run_cell(cell, f"pipeline '{name or fname}'")
        func = self._ns[fname]
        try:
            pipe = Pipeline(func, name=name)
        except NbpipeError as exc:
            raise UsageError(exc.message + no_steps_note(exc, plain)) from None
        except Exception as exc:  # the def's own code: one line naming the cell's line, no magic frames
            raise UsageError(_trace_error(exc, plain, func.__code__.co_filename)) from None
        self.shell.push({name or fname: pipe})

    # ------------------------------------------------------------------ %nbpipe

    @line_magic
    def nbpipe(self, line: str) -> Any:
        """Run and inspect pipelines: ``%nbpipe run|runs|logs|cancel|config|pull|attach ...``.

        See ``%nbpipe --help`` (or ``%nbpipe run --help``) for each command's arguments.
        """
        __tracebackhide__ = True  # noqa: F841 - %nbpipe debug's traceback starts at the user's code
        return self.commands.dispatch(line)
