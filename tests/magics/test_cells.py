"""Cell analysis (kernel_magics.cells) and function building (kernel_magics.cell_component), table-driven.

Pure functions: no kernel, no runner. The built functions are called for real and pickled
with cloudpickle, as a step would receive them.
"""

from __future__ import annotations

import inspect
import linecache
import math
import pickle
import threading

import cloudpickle
import pytest

from kernel_magics.cell_component import (
    CellComponent,
    build_function,
    component_from_cell,
    infer_pipeline,
    unpicklable,
)
from kernel_magics.cells import analyze_cell, classify_reads, later_reads
from nbpipe.errors import DefinitionError
from nbpipe.signature import source_of

# source, reads, assigned, extra expectations
FLOW_CASES = [
    ("x = x + 1", ("x",), ("x",), {}),
    ("total += step", ("step", "total"), ("total",), {}),
    ("for i in range(n):\n    y = f(i)\n    print(y)", ("range", "n", "f", "print"), ("i", "y"), {}),
    (
        "import numpy as np\nz = np.array(data)\n_t = 1",
        ("data",),
        ("z", "_t"),
        {"imported": ("np",), "outputs": ("z",)},
    ),
    ("import os.path\np = os.path.join(a, 'b')", ("a",), ("p",), {"imported": ("os",)}),
    ("def helper(v):\n    return v * k\nq = helper(2)", ("k",), ("q",), {"functions": ("helper",)}),
    ("def f():\n    return later\nlater = 1\nr = f()", (), ("later", "r"), {"functions": ("f",)}),
    ("r = [v * k for v in xs if v > lo]", ("xs", "lo", "k"), ("r",), {}),
    ("g = lambda u: u + w", ("w",), ("g",), {}),
    ("with open(p) as fh:\n    text = fh.read()", ("open", "p"), ("fh", "text"), {}),
    ("df['a'] = 1", ("df",), ("df",), {"has_work": True}),
    ("model.coef = c", ("c", "model"), ("model",), {}),
    ("(n := 5)\nm = n", (), ("n", "m"), {}),
    (
        "try:\n    v = risky()\nexcept KeyError as e:\n    v = str(e)",
        ("risky", "KeyError", "str"),
        ("v", "e"),
        {},
    ),
    ("if flag:\n    a = 1\nelse:\n    a = 2\nb = a", ("flag",), ("a", "b"), {}),
    ("a, (b, *c) = t", ("t",), ("a", "b", "c"), {}),
    ("class Cfg:\n    size = base\nc = Cfg()", ("base",), ("c",), {"classes": ("Cfg",)}),
    (
        "SEED = 0\ndef train(x):\n    return x + SEED",
        (),
        ("SEED",),
        {"functions": ("train",), "has_work": False, "is_function_cell": True},
    ),
    (
        "import math\ndef f(x):\n    return math.sqrt(x)\ny = f(4)",
        (),
        ("y",),
        {"functions": ("f",), "has_work": True, "is_function_cell": False},
    ),
    ("get_ipython().run_line_magic('time', 'x = 1')", ("get_ipython",), (), {"uses_ipython": True}),
    ("await asyncio.sleep(0)", ("asyncio",), (), {"has_await": True}),
    ("async def f():\n    await g()", ("g",), (), {"has_await": False, "functions": ("f",)}),
    ("import os", (), (), {"has_work": False, "imported": ("os",)}),
]


@pytest.mark.parametrize("source,reads,assigned,extra", FLOW_CASES, ids=[c[0][:30] for c in FLOW_CASES])
def test_analyze_cell(source: str, reads: tuple[str, ...], assigned: tuple[str, ...], extra: dict) -> None:
    flow = analyze_cell(source)
    assert set(flow.reads) == set(reads)
    assert flow.assigned == assigned
    for attr, want in extra.items():
        assert getattr(flow, attr) == want, attr


def test_reads_keep_first_seen_order() -> None:
    assert analyze_cell("a = b + c\nd = e(a)").reads == ("b", "c", "e")


def test_syntax_error_propagates() -> None:
    with pytest.raises(SyntaxError):
        analyze_cell("x = (1")


CLASSIFY_CASES = [
    # reads, namespace, hidden, data, code, missing
    (("x", "np", "print"), {"x": 1, "np": math}, (), ("x",), ("np",), ()),
    (("f", "Cls", "y"), {"f": lambda: 1, "Cls": int, "y": [1]}, (), ("y",), ("f", "Cls"), ()),
    (("In", "nope"), {"In": []}, ("In",), (), (), ("nope",)),
    (("len",), {}, (), (), (), ()),
    (("len",), {"len": 3}, (), ("len",), (), ()),  # a notebook variable shadowing a builtin is data
]


@pytest.mark.parametrize("reads,ns,hidden,data,code,missing", CLASSIFY_CASES)
def test_classify_reads(reads, ns, hidden, data, code, missing) -> None:  # type: ignore[no-untyped-def]
    got = classify_reads(reads, ns, hidden)
    assert (got.data, got.code, got.missing) == (data, code, missing)


def test_later_reads_skips_unparsable_cells() -> None:
    assert later_reads(["y = x + 1", "%%bash\necho", "print(z)"]) == {"x", "print", "z"}


def test_build_function_is_real_and_picklable() -> None:
    ns = {"__name__": "__main__", "scale": 3, "math": math}
    func = build_function(
        "make",
        "import math\nys = [v * scale for v in xs]\ntotal = math.fsum(ys)",
        ["xs"],
        ["ys", "total"],
        ns,
        {"ys": list, "total": float},
    )
    result = func([1, 2])
    assert result == ([3, 6], 9.0) and result._fields == ("ys", "total")
    assert source_of(func).startswith("def make(xs):")  # what the cache key hashes
    assert linecache.getline(func.__code__.co_filename, 3) == "total = math.fsum(ys)\n"  # tracebacks: cell lines
    restored = pickle.loads(cloudpickle.dumps(func))
    assert restored([2]).total == 6.0
    assert inspect.signature(func).return_annotation._fields == ("ys", "total")


def test_build_function_rejects_top_level_await() -> None:
    with pytest.raises(DefinitionError, match="cannot become a function: .await. outside async function"):
        build_function("f", "await thing()", [], [], {"__name__": "__main__"})


def test_unpicklable_names_the_reason() -> None:
    assert unpicklable([1, 2]) == ""
    assert "lock" in unpicklable(threading.Lock()).lower()


def test_component_from_cell_checks_outputs() -> None:
    ns = {"__name__": "__main__", "a": 1, "lock": threading.Lock()}
    with pytest.raises(DefinitionError, match="Output 'lock' of cell component 'c' .* cannot be pickled"):
        component_from_cell("c", "lock = a", "lock = a", ["a"], ["lock"], ns)
    with pytest.raises(DefinitionError, match="was not set"):
        component_from_cell("c", "b = a", "b = a", ["a"], ["b"], ns)


def test_code_change_changes_component_digest() -> None:
    ns = {"__name__": "__main__", "a": 1, "b": 2}
    one = component_from_cell("c", "b = a + 1", "b = a + 1", ["a"], ["b"], ns)
    two = component_from_cell("c", "b = a + 2", "b = a + 2", ["a"], ["b"], ns)
    again = component_from_cell("c", "b = a + 1", "b = a + 1", ["a"], ["b"], ns)
    assert one.digest != two.digest
    assert one.digest == again.digest
    assert one.source == "b = a + 1"


def test_infer_pipeline_wires_latest_producer_and_parameters() -> None:
    ns = {"__name__": "__main__", "n": 4, "xs": [0], "ys": [0], "total": 0}

    def cell(name: str, src: str, ins: tuple[str, ...], outs: tuple[str, ...]) -> CellComponent:
        return CellComponent(name, component_from_cell(name, src, src, ins, outs, ns), ins, outs)

    cells = [
        cell("make", "xs = list(range(n))", ("n",), ("xs",)),
        cell("double", "xs = [2 * v for v in xs]", ("xs",), ("xs",)),
        cell("add", "total = sum(xs) + n", ("xs", "n"), ("total",)),
    ]
    pipe = infer_pipeline("nb", cells, ns)
    assert pipe.parameters == [{"name": "n", "type": "int", "default": 4}]
    steps = pipe.steps
    assert steps["double"].inputs == {"xs_in": {"step": "make", "output": "xs"}}  # xs in, xs out
    assert steps["add"].inputs == {"xs": {"step": "double", "output": "xs"}, "n": {"parameter": "n"}}


def test_infer_pipeline_needs_json_for_unproduced_inputs() -> None:
    ns = {"__name__": "__main__", "arr": object(), "s": 0}
    comp = component_from_cell("total", "s = id(arr)", "s = id(arr)", ["arr"], ["s"], ns)
    with pytest.raises(DefinitionError, match="reads 'arr', which no earlier %%component cell outputs"):
        infer_pipeline("nb", [CellComponent("k", comp, ("arr",), ("s",))], ns)
    with pytest.raises(DefinitionError, match="no %%component plain cells"):
        infer_pipeline("nb", [], ns)
