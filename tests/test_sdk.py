"""Unit tests of the SDK core: components, tracing, validation, packages. Pure, no processes
(except the cross-process determinism check)."""

from __future__ import annotations

import re
import subprocess
import sys
import weakref
from typing import NamedTuple, Optional

import pytest

import nbpipe
from nbpipe import Dataset, Input, Metrics, Model, Output, Resources, component, pipeline
from nbpipe.component import parse_duration
from nbpipe.errors import DefinitionError


@component
def add(a: int, b: int = 1) -> int:
    return a + b


@component
def to_text(x: int) -> str:
    return str(x)


@component
def needs_float(v: float) -> float:
    return v * 2


class Pair(NamedTuple):
    left: list
    right: list


@component(retries=3, backoff="PT2S", timeout=60, cache=False, max_cache_staleness="P7D",
           resources=Resources(cpu="500m", memory="1Gi", gpu=1), packages=["numpy"], name="halve")
def split_list(items: list, frac: float = 0.5) -> Pair:
    k = int(len(items) * frac)
    return Pair(items[:k], items[k:])


@component
def make_model(rows: int, model: Output[Model], metrics: Output[Metrics]):
    open(model.path, "w").write("m" * rows)


@component
def use_dataset(data: Input[Dataset]) -> int:
    return 1


def test_component_signature_and_options() -> None:
    c = split_list
    assert c.name == "halve"
    assert [(i.name, i.type, i.has_default) for i in c.inputs] == [("items", "list", False), ("frac", "float", True)]
    assert [o.name for o in c.outputs] == ["left", "right"] and c.return_style == "namedtuple"
    o = c.options
    assert (o.retries, o.backoff, o.timeout, o.cache, o.max_cache_staleness) == (3, 2.0, 60.0, False, 7 * 86400)
    assert o.resources == Resources(cpu="500m", memory="1Gi", gpu=1) and o.packages == ("numpy",)
    assert c.python.startswith("%d.%d." % sys.version_info[:2]) and c.cloudpickle_version
    assert "def split_list" in c.source


def test_path_artifacts_and_no_return() -> None:
    assert [(o.name, o.kind, o.artifact_type) for o in make_model.outputs] == [
        ("model", "artifact", "Model"), ("metrics", "artifact", "Metrics")]
    assert make_model.return_style == "none"
    assert use_dataset.inputs[0].kind == "artifact"


def test_component_is_still_a_plain_function() -> None:
    assert add(2, b=3) == 5
    assert split_list([1, 2, 3, 4]) == Pair([1, 2], [3, 4])


def test_optional_and_container_types() -> None:
    @component
    def f(a: Optional[int] = None, b: list[int] | None = None, c: dict[str, float] = {}) -> dict:  # noqa: B006
        return {}

    assert [i.type for i in f.inputs] == ["Optional[int]", "Optional[list[int]]", "dict[str, float]"]


@pytest.mark.parametrize("value,seconds", [("P7D", 604800), ("PT30M", 1800), ("PT1H2M3S", 3723), (5, 5.0),
                                           ("P1W", 604800), ("P0D", 0.0)])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, "x") == seconds


@pytest.mark.parametrize("bad", ["7 days", "P", "-1", -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(DefinitionError, match="duration|negative"):
        parse_duration(bad, "max_cache_staleness")


def test_pipeline_builds_dag_with_names_and_edges() -> None:
    @pipeline
    def p(x: int = 1, items: list = [1, 2, 3, 4]):  # noqa: B006
        a = add(a=x)
        b = add(a=a.output, b=2).set_display_name("second add")
        left, right = split_list(items=items)
        t = to_text(x=b.output).after(split_list.__wrapped__ and b)
        use_dataset  # not called: no step

    names = [s["name"] for s in p.spec["steps"]]
    assert names[:2] == ["add", "add-2"] and set(names) == {"add", "add-2", "halve", "to_text"}
    steps = {s["name"]: s for s in p.spec["steps"]}
    assert steps["add-2"]["inputs"]["a"] == {"step": "add", "output": "output"}
    assert steps["add-2"]["display_name"] == "second add"
    assert steps["add"]["inputs"]["a"] == {"parameter": "x"}
    assert steps["halve"]["options"]["retries"] == 3
    assert p.parameters == [{"name": "x", "type": "int", "default": 1},
                            {"name": "items", "type": "list", "default": [1, 2, 3, 4]}]


DEFINITION_ERRORS = [
    ("unknown input", lambda: add(a=1, c=2), "has no input 'c'.*Its inputs are: a, b"),
    ("missing input", lambda: add(b=2), "Step 'add' needs input 'a'"),
    ("type mismatch", lambda: add(a=to_text(x=1).output), "input 'a' expects int, but 'to_text.output' is str"),
    ("literal mismatch", lambda: add(a="one"), "input 'a' expects int, got 'one'"),
    ("non-json literal", lambda: add(a=object()), "not a plain JSON value"),
    ("ambiguous output", lambda: add(a=split_list(items=[1]).output), "has 2 outputs"),
    ("value into artifact", lambda: use_dataset(data=add(a=1).output), "is an Input\\[Dataset\\] artifact"),
    ("artifact into value", lambda: add(a=make_model(rows=1).outputs["model"]), "expects a value.*Model artifact"),
    ("passing an output artifact", lambda: make_model(rows=1, model="x"), "is an Output\\[...\\]"),
    ("if on a placeholder", lambda: add(a=1) if nbpipe.pipeline is None else bool(split_list(items=[1]).outputs["left"]),
     "has no value while the pipeline is being defined"),
]


@pytest.mark.parametrize("label,body,message", DEFINITION_ERRORS, ids=[e[0] for e in DEFINITION_ERRORS])
def test_definition_errors_name_component_and_argument(label: str, body, message: str) -> None:
    def p():
        body()

    with pytest.raises(DefinitionError, match=message):
        pipeline(p)


def test_parameter_type_mismatch_and_bool_on_param() -> None:
    with pytest.raises(DefinitionError, match="pipeline parameter 's' is str"):
        @pipeline
        def p(s: str = "a"):
            add(a=s)

    with pytest.raises(DefinitionError, match="Pipeline parameter 'flag' has no value"):
        @pipeline
        def q(flag: bool = True):
            if flag:
                add(a=1)


def test_cycle_is_reported_with_its_path() -> None:
    with pytest.raises(DefinitionError, match="cycle: .*add.*add-2|cycle: .*add-2.*add"):
        @pipeline
        def p():
            a = add(a=1)
            b = add(a=2)
            a.after(b)
            b.after(a)


def test_unpicklable_closure_names_the_culprit() -> None:
    stream = sys._getframe()  # neither cloudpickle nor dill can pickle a frame
    with pytest.raises(DefinitionError, match="Component 'consume' cannot be pickled.*'stream'.*inside the function"):
        @component
        def consume(x: int) -> int:
            return x + stream.f_lineno


def test_dill_fallback_when_cloudpickle_fails() -> None:
    target = Resources()
    ref = weakref.ref(target)  # cloudpickle refuses weak references; dill pickles them

    @component
    def weak(x: int) -> int:
        return x if ref() is not None else -x

    assert weak.serializer == "dill"


def test_empty_pipeline_and_direct_call() -> None:
    with pytest.raises(DefinitionError, match="has no steps"):
        @pipeline
        def empty():
            pass

    @pipeline
    def one():
        add(a=1)

    with pytest.raises(DefinitionError, match="not called directly.*nbpipe.run"):
        one()


def test_run_params_are_checked() -> None:
    @pipeline
    def p(n: int, rate: float = 0.5):
        add(a=n)

    assert p.resolve_params({"n": 3}) == {"n": 3, "rate": 0.5}
    assert p.resolve_params({"n": 3, "rate": 1}) == {"n": 3, "rate": 1.0}
    with pytest.raises(DefinitionError, match="needs parameter 'n'"):
        p.resolve_params({})
    with pytest.raises(DefinitionError, match="no parameter 'm'"):
        p.resolve_params({"n": 1, "m": 2})
    with pytest.raises(DefinitionError, match="is int, got 'x'"):
        p.resolve_params({"n": "x"})


def test_package_bytes_are_deterministic_and_readable() -> None:
    @pipeline
    def p(x: int = 1):
        add(a=add(a=x).output)

    data = nbpipe.build_package(p)
    assert data == nbpipe.build_package(p)
    pkg = nbpipe.read_package(data)
    assert pkg.name == "p" and [s["name"] for s in pkg.spec["steps"]] == ["add", "add-2"]
    assert len(pkg.payloads) == 1


SCRIPT = """
import hashlib, sys
sys.path.insert(0, {path!r})
import nbpipe
from nbpipe import component, pipeline
@component
def inc(x: int) -> int:
    return x + 1
@pipeline
def p(x: int = 0):
    inc(x=inc(x=x).output)
print(inc.payload_digest, inc.digest, hashlib.sha256(nbpipe.build_package(p)).hexdigest())
"""


def test_same_component_pickles_to_the_same_hash_in_two_processes(tmp_path) -> None:
    script = tmp_path / "defs.py"
    script.write_text(SCRIPT.format(path=str(tmp_path)))
    outs = {subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(outs) == 1, outs


def test_public_api_is_pinned() -> None:
    assert sorted(nbpipe.__all__) == sorted([
        "Artifact", "ClassificationMetrics", "Client", "Collected", "Component", "Condition", "Dataset", "Elif",
        "Else", "ExitHandler", "HTML", "If", "Input", "Markdown", "Metrics", "Model", "NbpipeError", "Output",
        "ParallelFor", "Pipeline", "RUN_ID", "RUN_NAME", "RUN_STATUS", "Resources", "Run", "attach",
        "build_package", "compare", "component", "debug", "loguniform", "pipeline", "read_package", "run", "serve",
        "sweep", "uniform"])
    for name in nbpipe.__all__:
        assert getattr(nbpipe, name) is not None


# Which way imports point (DESIGN.md): lower layers never import higher ones, not even lazily.
LAYERS = [
    {"errors", "artifacts"},
    {"signature"},
    {"condition", "tracing", "sourcemap"},
    {"capture"},
    {"capture_checks"},  # a deleted helper, a package too large: said in the kernel before upload
    {"pins"},  # versions of the packages a component imports (issue 17), read from its capture
    {"component"},
    {"compiler"},
    {"pipeline", "package"},
    {"control"},
]


def _sdk_imports(module: str) -> set[str]:
    import ast
    from pathlib import Path

    tree = ast.parse((Path(nbpipe.__file__).parent / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # type-only imports are not imports at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found - {"__version__"}


def test_sdk_core_imports_point_one_way() -> None:
    layer = {m: i for i, mods in enumerate(LAYERS) for m in mods}
    for module, level in layer.items():
        for dep in _sdk_imports(module):
            assert dep in layer, f"nbpipe.{module} imports nbpipe.{dep}, which is not SDK core"
            assert layer[dep] < level or dep == module, f"nbpipe.{module} imports nbpipe.{dep} (a layer above)"


def test_sdk_core_loads_no_runner_widgets_lab_or_magics() -> None:
    code = ("import sys, nbpipe\nfrom nbpipe import component, pipeline\n"
            "@component\ndef inc(x: int) -> int:\n    return x + 1\n"
            "@pipeline\ndef p(x: int = 0):\n    inc(x=x)\n"
            "nbpipe.build_package(p)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('nbpipe.runner', 'nbpipe.widgets', 'nbpipe.lab', "
            "'kernel_magics', 'IPython', 'httpx', 'fastapi', 'sqlalchemy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


@component
def _wait(seconds: float) -> float:
    return seconds


@pytest.mark.parametrize("expr, shown", [
    ("seconds + 1", "`seconds + 1`"), ("1 + seconds", "`1 + seconds`"), ("seconds * 2", "`seconds * 2`"),
    ("seconds / 2", "`seconds / 2`"), ("-seconds", "`-seconds`"), ("int(seconds)", "`int(seconds)`"),
    ("round(seconds)", "`round(seconds)`"), ("seconds ** 2", "`seconds ** 2`"),
    ("_wait(seconds=seconds).output - 1", "`_wait.outputs['output'] - 1`"),
])
def test_arithmetic_on_a_placeholder_says_what_it_is(expr: str, shown: str) -> None:
    def body(seconds: float = 1.0) -> None:
        _wait(seconds=eval(expr))  # noqa: S307 - the expression under test

    with pytest.raises(DefinitionError, match=re.escape(shown) + " cannot be computed here") as info:
        pipeline(body)
    assert "Do the arithmetic inside a component" in str(info.value)


@component
def _greet(name: str) -> str:
    return name


@component
def _count(xs: list) -> int:
    return len(xs)


@pytest.mark.parametrize("call, message", [
    # attribute, item and f-string on a placeholder: what it is and where to do it
    ("_greet(name=name.upper())", "`name.upper` cannot be computed here.*write `name.upper` inside it"),
    ("_wait(seconds=cfg['lr'])", "`cfg\\['lr'\\]` cannot be computed here.*write `cfg\\['lr'\\]` inside it"),
    ("_greet(name=f'hello {name}')", "`f'\\{name\\}'` cannot be computed here"),
    ("_greet(name=_greet(name=name).output.strip())", "`_greet.outputs\\['output'\\].strip` cannot be computed"),
    # its text pasted into a constant would run with '<pipeline parameter …>' as the value
    ("_greet(name='hello ' + str(name))", "got the text '<pipeline parameter name: str>': a placeholder turned "
                                          "into a string"),
    ("_greet(name='%s!' % _greet(name=name).output)", "got the text '<output _greet.output: str>'"),
    # a placeholder inside a list constant is not wired, it would be pickled as the object
    ("_count(xs=[name, 'b'])", "input 'xs' got a list holding Pipeline parameter 'name' \\(at \\[0\\]\\)"),
    ("_count(xs=[{'w': _wait(seconds=1.0)}])", "got a list holding Step '_wait' \\(at \\[0\\]\\['w'\\]\\)"),
    # a typo on a step
    ("_greet(name=_greet(name=name).ouput)", "Step '_greet' has no attribute 'ouput'. Did you mean .output\\?"),
    ("_greet(name=_greet(name=name).set_retry(2))", "has no attribute 'set_retry'. Did you mean .set_retries\\?"),
])
def test_using_a_placeholder_as_a_value_says_what_it_is(call: str, message: str) -> None:
    def body(name: str = "a", cfg: dict = {"lr": 0.1}) -> None:  # noqa: B006
        eval(call)  # noqa: S307 - the call under test

    with pytest.raises(DefinitionError, match=message):
        pipeline(body)


def test_probing_a_placeholder_for_attributes_still_works() -> None:
    """hasattr/getattr with a default (libraries, IPython, serializers) see a plain missing attribute."""
    seen = {}

    def body(name: str = "a") -> None:
        step = _greet(name=name)
        seen.update(param=(hasattr(name, "path"), getattr(name, "shape", None)),
                    output=hasattr(step.output, "path"), step=getattr(step, "spec", "none"))

    pipeline(body)
    assert seen == {"param": (False, None), "output": False, "step": "none"}


def test_looping_over_a_parameter_points_to_parallel_for() -> None:
    def body(items: list = [1, 2]) -> None:  # noqa: B006
        for i in items:
            _wait(seconds=i)

    with pytest.raises(DefinitionError, match=r"Fan out with `with nbpipe.ParallelFor\(items\) as item:`"):
        pipeline(body)
