"""A generator or ``async def`` made a component is refused at definition, naming what to do.

Both were accepted; the step then failed at run time with cloudpickle's "cannot pickle 'generator'
object" (or 'coroutine') and a traceback of nbpipe's and cloudpickle's own frames.
"""

from __future__ import annotations

import pytest

from nbpipe import component
from nbpipe.errors import DefinitionError


def test_a_generator_component_is_refused_with_the_fix() -> None:
    def numbers(n: int) -> list:
        yield from range(n)

    with pytest.raises(DefinitionError) as err:
        component(numbers)
    assert str(err.value) == (
        "Component 'numbers' is a generator function (it yields). A step stores what the function returns, "
        "and a generator cannot be stored or passed to the next step. Return the items instead "
        "(return list(...)), or write them to an Output[Dataset].")


def test_an_async_component_is_refused_with_the_fix() -> None:
    async def fetch(url: str) -> str:
        return url

    async def stream(n: int) -> list:
        yield n

    with pytest.raises(DefinitionError, match=r"^Component 'fetch' is an async function\. .*asyncio\.run"):
        component(fetch)
    with pytest.raises(DefinitionError, match=r"^Component 'stream' is a generator function"):
        component(stream)


def test_a_plain_function_returning_a_list_is_still_a_component() -> None:
    def numbers(n: int) -> list:
        return list(range(n))

    assert component(numbers).func(n=2) == [0, 1]
