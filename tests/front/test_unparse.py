"""Printing the IR back as .tx text gives a spec that resolves to an equal IR."""

from __future__ import annotations

from pathlib import Path

import pytest

import txdsl
from txdsl.front.unparse import to_tx

SPECS = Path(__file__).resolve().parents[2] / "specs"
MODELS = [(p.name, ir.name) for p in sorted(SPECS.glob("*.tx")) for ir in txdsl.parse_all(p)]


@pytest.mark.parametrize("spec, model", MODELS)
def test_bundled_models_round_trip(spec, model):
    ir = txdsl.parse_file(SPECS / spec, model=model)
    text = to_tx(ir)
    assert "import" not in text and "extends" not in text
    again = txdsl.parse(text)
    assert again == ir and again.hash() == ir.hash()


@pytest.mark.parametrize("extra", [
    "decoder { layer[1, 3] { ffn = none }; layer[2] { attention.kv_heads = 2 } }",
    "decoder { share = all }",
    "decoder { share = cycle(unique: 2) }",
    "decoder { share = sequence(unique: 2) }",
    "decoder { residual = sandwich; causal = false; dropout = 0.25 }",
    # a parameter named like an enum value: the printer must quote the value
    'gelu = 3; decoder { ffn.act = "gelu" }',
])
def test_overrides_and_sharing_round_trip(extra):
    base = """model base {
      d_model = 32; heads = 4
      embedding { tokens = 50; size = 16; norm = layernorm; position = learned(max_len: 8) }
      decoder(4) { norm = layernorm; attention = full(heads: heads)
                   ffn = mlp(hidden: 64, act: gelu); final_norm = layernorm }
      heads { mlm = mlm(tied: true); tags = token_classifier(classes: 3) }
    }
    """
    ir = txdsl.parse(base + f"model m extends base {{ {extra} }}")
    assert txdsl.parse(to_tx(ir)) == ir
