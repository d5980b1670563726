"""Serving mistakes a user makes from the kernel get errors that say what is wrong and what to do.

Real runner, real model server: asking for a version that does not exist says where the versions
are (not "check the request's inputs"); a failing predict's traceback shows the user's frames, not
the web framework's; a ragged input is named before anything is sent.
"""

from __future__ import annotations

import numpy as np
import pytest

from nbpipe.errors import NbpipeError
from nbpipe.serving import EndpointError, serve


def scale(model, x):
    return x * model


def boom(model, x):
    return x / model["missing"]


def test_unknown_version_hint_and_user_traceback(nb_client):
    ep = serve(3.0, predict=scale, name="qa2-scale", runner=nb_client)
    with pytest.raises(EndpointError) as ei:
        ep.predict(np.array([1.0]), version="nope")
    assert ei.value.status == 404
    assert "versions" in ei.value.hint and "inputs" not in ei.value.hint

    bad = serve({"w": 1}, predict=boom, name="qa2-boom", runner=nb_client)
    with pytest.raises(EndpointError) as ei:
        bad.predict(np.array([1.0]))
    assert ei.value.status == 500
    tb = ei.value.traceback
    assert "KeyError" in tb and "in boom" in tb
    assert "starlette" not in tb and "anyio" not in tb and "concurrent" not in tb


def test_ragged_input_is_named(nb_client):
    ep = serve(2.0, predict=scale, name="qa2-ragged", runner=nb_client)
    with pytest.raises(NbpipeError, match="Input 'input-0' cannot be sent to endpoint 'qa2-ragged'") as ei:
        ep.predict([[1.0, 2.0], [3.0]])
    assert "rectangular" in ei.value.hint
    np.testing.assert_array_equal(ep.predict(np.array([[1.0, 2.0]])), [[2.0, 4.0]])
