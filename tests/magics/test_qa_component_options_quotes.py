"""QA: quoted ``%%component`` options, as a shell user writes them.

IPython's argument split keeps quotes, so ``--packages "pandas>=2, numpy"`` made the packages
``'"pandas>=2'`` and ``'numpy"'`` (and ``"pandas >= 2"`` three: ``"pandas``, ``>=``, ``2"``), which only
failed later, when the step's environment was installed. Quotes now group words as in a shell, and a
version constraint stays with its package.
"""

from __future__ import annotations

from typing import Any

import pytest

DEF = "\ndef qa_g(x: int) -> int:\n    return x"


@pytest.mark.parametrize("options, packages", [
    ("--packages 'pandas>=2, numpy'", ["pandas>=2", "numpy"]),
    ('--packages "pandas >= 2"', ["pandas>=2"]),
    ("--packages scikit-learn,numpy", ["scikit-learn", "numpy"]),
    ("--packages 'numpy ~= 1.26' --memory '2Gi'", ["numpy~=1.26"]),
])
def test_quoted_packages_are_the_requirements_typed(ip: Any, options: str, packages: list[str]) -> None:
    assert ip.run_cell(f"%%component {options}{DEF}").success
    assert list(ip.user_ns["qa_g"].options.packages) == packages


def test_a_quoted_unknown_option_is_still_named(ip: Any) -> None:
    result = ip.run_cell(f"%%component --retires '2'{DEF}")
    assert not result.success and "Did you mean --retries?" in str(result.error_in_exec)
