"""Fixture notebooks for the export tests, written with nbformat (small, readable, real).

Each builder returns a notebook node; :func:`write` saves it. Heavy cells write a marker file
and then ``raise SystemExit`` so a test can prove export never ran them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def code(source: str, tags: tuple[str, ...] = (), count: int | None = None) -> Any:
    cell = new_code_cell(source.strip("\n"), metadata={"tags": list(tags)} if tags else {})
    cell.execution_count = count
    return cell


def write(nb: Any, path: Path) -> Path:
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
    return path


def heavy(marker: Path) -> str:
    """A compute cell that leaves a marker and stops the process if anything runs it."""
    return (f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
            "X, y = load_digits(return_X_y=True)\nraise SystemExit('heavy cell ran')")


def digits(marker: Path) -> Any:
    """Decorator-style sklearn digits notebook: load → train → evaluate, plus heavy cells."""
    return new_notebook(cells=[
        new_markdown_cell("# Digits: train and evaluate a classifier"),
        code("%matplotlib inline\n!pip install scikit-learn", count=1),
        code("import json\nimport numpy as np\nimport nbpipe\nfrom nbpipe import component, pipeline\n"
             "from nbpipe import Input, Output, Dataset, Model, Metrics, ClassificationMetrics\n"
             "from sklearn.datasets import load_digits", count=2),
        code("SEED = 0\nTEST_SIZE = 0.25\n\n\ndef split(X, y, test_size):\n"
             "    from sklearn.model_selection import train_test_split\n"
             "    return train_test_split(X, y, test_size=test_size, random_state=SEED, stratify=y)", count=3),
        code(heavy(marker), count=4),
        code('''
@component(packages=["scikit-learn"], resources=nbpipe.Resources(cpu="1", memory="1Gi"), retries=1)
def load_data(test_size: float, data: Output[Dataset]) -> np.ndarray:
    """Split the digits; return the test labels."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = split(X, y, test_size)
    with open(data.path, "wb") as fh:
        np.savez(fh, X_train=X_tr, X_test=X_te, y_train=y_tr, y_test=y_te)
    return y_te


@component(packages=["scikit-learn"])
def train(data: Input[Dataset], C: float, model: Output[Model]) -> float:
    import pickle
    from sklearn.linear_model import LogisticRegression
    d = np.load(data.path)
    clf = LogisticRegression(C=C, max_iter=300).fit(d["X_train"] / 16.0, d["y_train"])
    with open(model.path, "wb") as fh:
        pickle.dump(clf, fh)
    return float(clf.score(d["X_train"] / 16.0, d["y_train"]))
''', count=5),
        code("clf = train.func  # poke at it in the notebook\nscores = [s for s in range(3)]\n"
             "for s in scores:\n    print(s)", count=6),
        code('''
@component(cache=False)
def evaluate(data: Input[Dataset], model: Input[Model], labels: np.ndarray,
             metrics: Output[Metrics], report: Output[ClassificationMetrics]) -> float:
    import pickle
    from sklearn.metrics import confusion_matrix
    d = np.load(data.path)
    with open(model.path, "rb") as fh:
        clf = pickle.load(fh)
    assert (labels == d["y_test"]).all()
    acc = float(clf.score(d["X_test"] / 16.0, d["y_test"]))
    metrics.log_metric("accuracy", acc)
    report.log_confusion_matrix(list(range(10)), confusion_matrix(d["y_test"], clf.predict(d["X_test"] / 16.0)))
    return acc


@pipeline(name="digits")
def digits_pipeline(C: float = 1.0, test_size: float = TEST_SIZE):
    """Train and evaluate a digits classifier."""
    d = load_data(test_size=test_size)
    t = train(data=d.outputs["data"], C=C)
    e = evaluate(data=d.outputs["data"], model=t.outputs["model"], labels=d.outputs["output"])
    e.set_display_name("Evaluate model")
''', count=7),
        code(heavy(marker).replace("'ran'", "'fit ran'") + "\nmodel.fit(X, y)", count=8),
        code("run = nbpipe.run(digits_pipeline, C=0.5)\nrun.wait()", count=9),
    ])


def kale(marker: Path) -> Any:
    """A Kale notebook: imports/functions/pipeline-parameters cells and three steps."""
    nb = new_notebook(cells=[
        code("import numpy as np", tags=("imports",)),
        code("def scale(a, k):\n    return a * k", tags=("functions",)),
        code("FACTOR = 3\nNAME = 'kale'", tags=("pipeline-parameters",)),
        code("data = np.arange(10)\nunused_local = 1", tags=("step:load",)),
        code("%matplotlib inline\ntotal = int(scale(data, FACTOR).sum())", tags=("step:transform", "prev:load")),
        code("label = f'{NAME}:{total}'", tags=("step:report", "prev:transform")),
        code("print(label)  # joins step report"),
        code(heavy(marker), tags=("skip",)),
    ])
    nb.metadata["kubeflow_notebook"] = {"pipeline_name": "kale-demo"}
    return nb


def simple(extra_cells: list[Any] | None = None, pipeline_cell: str | None = None) -> Any:
    """A tiny decorator-style notebook; error cases add or replace cells."""
    cells = [
        code("from nbpipe import component, pipeline"),
        code("@component\ndef add(a: int, b: int) -> int:\n    return a + b"),
        code(pipeline_cell or "@pipeline\ndef adder(x: int = 1):\n    add(a=x, b=2)"),
    ]
    return new_notebook(cells=cells + list(extra_cells or []))
