"""The attention contract (txdsl.sdk.attention), for EVERY buildable implementation.

The checks live in :mod:`txdsl.sdk.testing`, the same suite ``txdsl verify``
runs on installed third-party kinds: an implementation that ignored a mask
or its decode state would be silently wrong, so it fails here instead. A new
kind that needs arguments beyond ``heads`` adds them to ``EXAMPLE_ARGS``.
"""

from __future__ import annotations

import pytest

import txdsl_attention
import txdsl_positions
from txdsl.plugins import load_registry
from txdsl.sdk.testing import CHECKS, NotApplicable, attention_subjects

REGISTRY = load_registry({"attention": txdsl_attention, "positions": txdsl_positions})
EXAMPLE_ARGS: dict[str, dict] = {}  # kind -> arguments besides heads, for kinds that need them
SUBJECTS = attention_subjects(REGISTRY, example_args=EXAMPLE_ARGS)


def test_there_is_something_to_test():
    assert {"full[reference]", "full[sdpa]", "full[flex]"} <= {str(s) for s in SUBJECTS}


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("subject", SUBJECTS, ids=str)
def test_contract(subject, check):
    try:
        check(subject)
    except NotApplicable as why:
        pytest.skip(str(why))
