"""Fixtures for the front end (source, parser, lower, fmt) tests."""

from __future__ import annotations

import pytest

from txdsl.errors import Source, SpecError
from txdsl.front.lower import lower, lower_expr, lower_model, lower_selector, lower_stmt

_LOWER = {"start": lower, "model": lower_model, "stmt": lower_stmt, "selector": lower_selector,
          "expr": lower_expr}


@pytest.fixture
def src():
    """``src(text, path="t.tx")``: a Source for ``text``."""
    return lambda text, path="t.tx": Source(path, text)


@pytest.fixture
def low():
    """``low(text, start="expr")``: the syntax node of ``text`` parsed from ``start``."""
    return lambda text, start="expr": _LOWER[start](Source("t.tx", text))


@pytest.fixture
def syntax_error():
    """``syntax_error(text, start="start")``: the SpecError that lowering ``text`` raises."""

    def run(text: str, start: str = "start") -> SpecError:
        with pytest.raises(SpecError) as info:
            _LOWER[start](Source("t.tx", text))
        return info.value

    return run
