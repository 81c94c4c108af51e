"""Property: any mutation of a bundled spec gives a valid IR or a located SpecError.

Never another exception, never a hang: the front end is total over text.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import txdsl
from txdsl import SpecError
from txdsl.ir import ModelIR

SPECS = Path(__file__).parent.parent / "specs"
TEXTS = [p.read_text() for p in sorted(SPECS.glob("*.tx"))]
TOKENS = ["{", "}", "(", ")", "[", "]", ":", ";", "=", ",", ".", "-", "*", "**", "//", "/",
          "0", "-1", "1e309", "99999999999999999999", "true", "none", "layer", "model",
          "extends", "import", '"', "#", "\n", " ", "\x00", "é", "d_model", "heads", "full(",
          "layer[0]", "::", "2**64", "1/0", "decoder(2) {", "encoder", "head = lm", "share = all"]


@st.composite
def mutated(draw) -> str:
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 40)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif op == "replace":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_specs_give_an_ir_or_a_located_error(text):
    try:
        ir = txdsl.parse(text, base_dir=SPECS, path="mutant.tx")
    except SpecError as err:
        for e in err.errors:
            assert e.path is not None
            assert e.message
            rendered = e.render()
            assert rendered.startswith(e.location() + ": error: ")
            if e.span is not None:
                assert e.line >= 1 and e.column >= 1
        return
    assert isinstance(ir, ModelIR)
    assert ModelIR.model_validate_json(ir.model_dump_json()) == ir
