"""Step tracebacks show the user's source, whatever cloudpickle does to file names.

cloudpickle 3.1.3 names every code object it pickles ``<dynamic-code>``. The capture records
each captured function's file (or ``Cell In[N]``) and lines; the step process (and the KFP
bootstrap) puts them back, so a traceback reads ``File ".../features.py", line 5, in scale``
with the line that raised. Notebook cells are covered in tests/magics/test_live_capture.py.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from nbpipe import component, pipeline
from nbpipe.errors import StepFailed
from nbpipe.export import _kfp_bootstrap
from nbpipe.sourcemap import ATTR

MODULE = '''\
import math


def _check(x):
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x


def scale(x: float) -> float:
    """Square root of a non-negative number."""
    return math.sqrt(_check(x))
'''


@pytest.fixture()
def features(tmp_path: Path) -> Any:
    path = tmp_path / "features_for_tracebacks.py"
    path.write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("features_for_tracebacks"), path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("features_for_tracebacks", None)


def test_a_function_from_a_py_file_shows_its_file_and_lines(features: Any, nb_client: Any) -> None:
    module, path = features
    scale = component(module.scale, cache=False)

    @pipeline
    def p(x: float = -4.0):
        scale(x=x)

    with pytest.raises(StepFailed) as info:
        nb_client.submit(p).wait(timeout=120)
    text = str(info.value)
    assert f'File "{path}", line 12, in scale\n    return math.sqrt(_check(x))' in text, text
    assert f'File "{path}", line 6, in _check\n    raise ValueError(f"negative input {{x}}")' in text, text
    assert "<dynamic-code>" not in text and "nbpipe/" not in text


def test_the_kfp_bootstrap_restores_the_same_lines(features: Any) -> None:
    module, path = features
    payload = component(module.scale).payload
    func = cloudpickle.loads(payload)
    assert getattr(func, ATTR)["code"], "the payload carries its source record"
    _kfp_bootstrap._restore_sources(func)
    try:
        func(-1.0)
    except ValueError as exc:
        text = "".join(traceback.format_exception(exc))
    assert f'File "{path}", line 6, in _check\n    raise ValueError(f"negative input {{x}}")' in text, text
