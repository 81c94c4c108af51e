"""The kernel plan's choice for sparse kinds (and its reasons), and located spec errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import txdsl
from txdsl.back.select import select
from txdsl.errors import SpecError
from txdsl.sdk.targets import Target

SPECS = Path(__file__).resolve().parents[3] / "specs"


def choice(ir, registry, **target):
    plan = select(ir, Target(**target), registry=registry)
    c = next(c for c in plan.choices if c.family == "attention" and c.kind == "sparse")
    return c, plan.explain()


def test_plan_picks_blocked_on_cpu_eager_and_sdpa_for_export(registry):
    ir = txdsl.parse_file(SPECS / "bigbird.tx")
    c, text = choice(ir, registry, device="cpu", backend="eager")
    assert c.impl == "blocked" and "priority 10" in text
    assert "FlexAttention can't compile a mask made inside the model" in text
    c, _ = choice(ir, registry, device="cpu", backend="onnx")
    assert c.impl == "sdpa"  # blocked serves eager and inductor only; flex doesn't export
    c, _ = choice(ir, registry, device="cuda", backend="inductor")
    assert c.impl == "flex"


@pytest.mark.parametrize("body,words", [
    ("decoder { attention = local(heads: heads, window: 4, ring: true) }", "causal stack"),
    ("decoder { attention = sparse(heads: heads, global_last: 2) }", "global_last (2)"),
    ("decoder { attention = sparse(heads: heads) }", "names no pattern"),
    ("decoder { attention = strided(heads: 3, stride: 4) }", "heads must be even"),
    ("decoder { attention = random(heads: heads, random: 0) }", "random (0)"),
])
def test_bad_arguments_are_located_errors(body, words):
    text = f'import "gpt2.tx"\nmodel bad extends gpt2 {{\n  {body}\n}}\n'
    with pytest.raises(SpecError) as err:
        txdsl.parse(text, base_dir=str(SPECS))
    assert words in str(err.value)
    assert err.value.line == 3, str(err.value)
