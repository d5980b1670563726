"""The refusal of a component that cannot be pickled reads as sentences: "… cannot be pickled. It uses
'bad' (Bad: nope). …" (it said "cannot be pickled. it uses …")."""

from __future__ import annotations

import pytest

from nbpipe import component
from nbpipe.errors import DefinitionError


class Unpicklable:
    def __reduce__(self) -> tuple:
        raise TypeError("no pickling here")


BAD = Unpicklable()


def test_the_culprit_sentence_starts_with_a_capital() -> None:
    def uses_bad(x: int) -> int:
        return x + (BAD is not None)

    with pytest.raises(DefinitionError) as err:
        component(uses_bad)
    assert str(err.value).startswith(
        "Component 'uses_bad' cannot be pickled. It uses 'BAD' (Unpicklable: no pickling here). Create that object")
