"""Handwritten digits, end to end: load → split → train → evaluate → predict image #N.

The Kubeflow train/predict example, on scikit-learn's bundled digits data (no download):
``python -m nbpipe.examples.digits`` runs it on the embedded runner with live progress and
prints the metrics, the confusion matrix and the prediction. Also usable as
``nbpipe run nbpipe.examples.digits:digits -p image=7``.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from nbpipe import ClassificationMetrics, Dataset, Input, Metrics, Model, Output, component, pipeline


@component(packages=["scikit-learn", "pandas", "pyarrow"])
def load_digits_data(data: Output[Dataset]) -> int:
    """Load the 8x8 digits bundled with scikit-learn into a Parquet dataset."""
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True)
    frame = digits.frame
    frame.to_parquet(data.path + ".parquet")
    import os

    os.replace(data.path + ".parquet", data.path)
    data.metadata["rows"] = len(frame)
    print(f"loaded {len(frame)} images of {frame['target'].nunique()} digits")
    return len(frame)


@component(packages=["scikit-learn", "pandas", "pyarrow"])
def split(data: Input[Dataset], train: Output[Dataset], test: Output[Dataset],
          test_size: float = 0.25, seed: int = 0) -> None:
    """Stratified train/test split."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    frame = pd.read_parquet(data.path)
    tr, te = train_test_split(frame, test_size=test_size, random_state=seed, stratify=frame["target"])
    tr.to_parquet(train.path)
    te.to_parquet(test.path)
    print(f"train: {len(tr)} rows, test: {len(te)} rows")


@component(packages=["scikit-learn", "pandas", "pyarrow"], retries=1)
def train(train: Input[Dataset], model: Output[Model], c: float = 10.0, gamma: float = 0.001) -> None:
    """Fit an RBF support vector classifier."""
    import pickle

    import pandas as pd
    from sklearn.svm import SVC

    frame = pd.read_parquet(train.path)
    clf = SVC(C=c, gamma=gamma, probability=False).fit(frame.drop(columns="target"), frame["target"])
    with open(model.path, "wb") as fh:
        pickle.dump(clf, fh)
    model.metadata.update({"framework": "scikit-learn", "estimator": "SVC", "C": c, "gamma": gamma})
    print(f"trained SVC(C={c}, gamma={gamma}) on {len(frame)} images")


class Scores(NamedTuple):
    accuracy: float
    f1_macro: float


@component(packages=["scikit-learn", "pandas", "pyarrow"])
def evaluate(test: Input[Dataset], model: Input[Model], metrics: Output[Metrics],
             report: Output[ClassificationMetrics]) -> Scores:
    """Accuracy, macro F1 and the confusion matrix on the held-out images."""
    import pickle

    import pandas as pd
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    frame = pd.read_parquet(test.path)
    with open(model.path, "rb") as fh:
        clf = pickle.load(fh)
    y, pred = frame["target"], clf.predict(frame.drop(columns="target"))
    acc, f1 = float(accuracy_score(y, pred)), float(f1_score(y, pred, average="macro"))
    metrics.log_metric("accuracy", acc)
    metrics.log_metric("f1_macro", f1)
    labels = list(range(10))
    report.log_confusion_matrix([str(d) for d in labels], confusion_matrix(y, pred, labels=labels).tolist())
    print(f"accuracy={acc:.4f} f1_macro={f1:.4f}")
    return Scores(acc, f1)


class Prediction(NamedTuple):
    predicted: int
    actual: int
    figure: object


@component(packages=["scikit-learn", "pandas", "pyarrow", "matplotlib"])
def predict(test: Input[Dataset], model: Input[Model], image: int = 0) -> Prediction:
    """Predict one test image and return it as a figure for the run graph."""
    import pickle

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.read_parquet(test.path)
    if not 0 <= image < len(frame):
        raise IndexError(f"image must be in 0..{len(frame) - 1}, got {image}")
    row = frame.iloc[[image]]
    with open(model.path, "rb") as fh:
        clf = pickle.load(fh)
    predicted, actual = int(clf.predict(row.drop(columns="target"))[0]), int(row["target"].iloc[0])
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(row.drop(columns="target").to_numpy().reshape(8, 8), cmap="gray_r")
    ax.set_title(f"predicted {predicted}, actual {actual}")
    ax.axis("off")
    print(f"image #{image}: predicted {predicted}, actual {actual}")
    return Prediction(predicted, actual, fig)


@pipeline
def digits(test_size: float = 0.25, c: float = 10.0, gamma: float = 0.001, image: int = 7):
    """Train and evaluate a digits classifier, then predict one image."""
    data = load_digits_data()
    parts = split(data=data.outputs["data"], test_size=test_size)
    model = train(train=parts.outputs["train"], c=c, gamma=gamma)
    evaluate(test=parts.outputs["test"], model=model.outputs["model"])
    predict(test=parts.outputs["test"], model=model.outputs["model"], image=image).set_display_name(
        "Predict image #N")


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline on the embedded runner with live progress, then print results."""
    import argparse

    import nbpipe
    from nbpipe._progress import follow

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=int, default=7)
    ap.add_argument("--c", type=float, default=10.0)
    args = ap.parse_args(argv)
    print("nbpipe demo: digits classifier (scikit-learn digits, bundled; no download)")
    print("Starting the embedded runner and submitting the pipeline ...", flush=True)
    run = nbpipe.run(digits, image=args.image, c=args.c, experiment="demo")
    print(f"Run {run.id} on {run.client.url}", flush=True)
    snap = follow(run)
    if snap["state"] != "succeeded":
        run.raise_for_failure()
        return 1
    scores = run.outputs("evaluate")
    pred = run.outputs("predict")
    cm = scores["report"].metadata["confusionMatrix"]
    print(f"\naccuracy  {scores['accuracy']:.4f}    macro F1  {scores['f1_macro']:.4f}")
    print("\nconfusion matrix (rows: actual, columns: predicted)")
    print("     " + " ".join(f"{c:>3}" for c in cm["categories"]))
    for label, row in zip(cm["categories"], cm["matrix"]):
        print(f"  {label:>2} " + " ".join(f"{v:>3}" for v in row))
    print(f"\nimage #{args.image}: predicted {pred['predicted']}, actual {pred['actual']}")
    print(f"\nSee it again: nbpipe show {run.id}   ·   re-run (cached): python -m nbpipe.examples.digits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
