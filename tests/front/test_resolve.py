"""Resolution: imports, extends/override semantics, expressions, per-layer patterns, sharing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import txdsl
from txdsl import SpecError
from txdsl.ir import ModelIR

BASE = """
model base {
  vocab = 100
  d_model = 64
  heads = 4
  layers = 4
  embedding { tokens = vocab; position = learned(max_len: 32) }
  decoder(layers) {
    residual = pre
    norm = layernorm(eps: 1e-5)
    attention = full(heads: heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu)
    final_norm = layernorm
  }
  head = lm(tied: true)
}
"""


def parse(extra: str = "", **kw) -> ModelIR:
    return txdsl.parse(BASE + extra, **kw)


def test_every_layer_is_explicit():
    ir = parse()
    assert [layer.index for layer in ir.decoder.layers] == [0, 1, 2, 3]
    layer = ir.decoder.layers[2]
    assert layer.attention.kind == "full" and layer.attention.args["heads"] == 4
    assert layer.ffn.args["hidden"] == 256
    assert ir.decoder.causal is True
    assert ir.decoder.final_norm.kind == "layernorm"


def test_extends_re_evaluates_parent_expressions():
    ir = parse("model small extends base { d_model = 32; heads = 2; layers = 2 }")
    assert ir.name == "small" and ir.d_model == 32 and len(ir.decoder.layers) == 2
    assert ir.decoder.layers[0].ffn.args["hidden"] == 128  # 4 * d_model, with the child's d_model
    assert ir.decoder.layers[0].attention.args["heads"] == 2


def test_override_one_argument_keeps_the_others():
    ir = parse("model m extends base { decoder { ffn.act = relu } }")
    ffn = ir.decoder.layers[0].ffn
    assert ffn.args["act"] == "relu" and ffn.args["hidden"] == 256


def test_dotted_override_from_model_level():
    ir = parse("model m extends base { decoder.attention.kv_heads = 2 }")
    assert all(layer.attention.args["kv_heads"] == 2 for layer in ir.decoder.layers)


def test_override_one_block_keeps_the_rest():
    ir = parse("model m extends base { decoder(2) { norm = rmsnorm } }")
    assert len(ir.decoder.layers) == 2
    assert ir.decoder.layers[0].norm.kind == "rmsnorm"
    assert ir.decoder.layers[0].attention.kind == "full"  # untouched


@pytest.mark.parametrize("selector, chosen", [
    ("0", {0}), ("-1", {3}), ("1:3", {1, 2}), ("::2", {0, 2}), ("1::2", {1, 3}),
    (":2, -1", {0, 1, 3}), ("layers - 1", {3}), ("3::4", {3}),
])
def test_layer_selectors(selector, chosen):
    ir = parse(f"model m extends base {{ decoder {{ layer[{selector}] {{ ffn = none }} }} }}")
    assert {layer.index for layer in ir.decoder.layers if layer.ffn is None} == chosen


def test_later_layer_overrides_win_and_edit_arguments():
    ir = parse("""model m extends base { decoder {
        layer[::2] { ffn.hidden = 32 }
        layer[0] { ffn.act = relu }
    } }""")
    f0, f1, f2 = (ir.decoder.layers[i].ffn for i in range(3))
    assert (f0.args["hidden"], f0.args["act"]) == (32, "relu")
    assert (f1.args["hidden"], f1.args["act"]) == (256, "gelu")
    assert (f2.args["hidden"], f2.args["act"]) == (32, "gelu")


@pytest.mark.parametrize("share, owners", [
    ("all", [None, 0, 0, 0]),
    ("none", [None, None, None, None]),
    ("cycle(unique: 2)", [None, None, 0, 1]),
    ("sequence(unique: 2)", [None, 0, None, 2]),
])
def test_sharing(share, owners):
    ir = parse(f"model m extends base {{ decoder {{ share = {share} }} }}")
    assert [layer.shares for layer in ir.decoder.layers] == owners


def test_expressions():
    ir = parse("""model m extends base {
        a = 2 ** 3 ** 2          # right-associative: 2 ** 9
        b = -2 ** 2              # -(2 ** 2)
        c = (7 // 2) * 10 % 4 + max(1, 5, 3) - min(2.5, 4)
        d = 7 / 2
        e = true
        f = "text"
    }""")
    assert ir.params["a"] == 512 and ir.params["b"] == -4
    assert ir.params["c"] == (7 // 2) * 10 % 4 + 5 - 2.5
    assert ir.params["d"] == 3.5 and ir.params["e"] is True and ir.params["f"] == "text"


def test_parameters_in_any_order():
    ir = txdsl.parse(BASE.replace("vocab = 100", "vocab = d_model + 36"))
    assert ir.embedding.tokens == 100


def test_component_valued_parameter():
    ir = parse("model m extends base { n = rmsnorm(eps: 1e-6); decoder { norm = n } }")
    assert ir.decoder.layers[0].norm.kind == "rmsnorm"
    assert ir.decoder.layers[0].norm.args["eps"] == 1e-6


def test_several_models_last_is_default_and_model_picks():
    text = BASE + "model other extends base { layers = 1 }"
    assert txdsl.parse(text).name == "other"
    assert txdsl.parse(text, model="base").name == "base"


def test_imports_are_relative_to_the_importing_file(tmp_path: Path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.tx").write_text(BASE)
    (tmp_path / "lib" / "mid.tx").write_text('import "base.tx"\nmodel mid extends base { layers = 3 }')
    top = tmp_path / "top.tx"
    top.write_text('import "lib/mid.tx"\nmodel top extends mid { heads = 2 }')
    ir = txdsl.parse_file(top)
    assert len(ir.decoder.layers) == 3 and ir.decoder.layers[0].attention.args["heads"] == 2
    ir2 = txdsl.parse('import "mid.tx"\nmodel t extends mid {}', base_dir=tmp_path / "lib")
    assert len(ir2.decoder.layers) == 3


def test_json_round_trip_and_hash():
    ir = parse("model m extends base { decoder { share = all; layer[1] { dropout = 0.0 } } }")
    again = ModelIR.model_validate_json(ir.model_dump_json())
    assert again == ir and again.hash() == ir.hash()
    assert hash(again) == hash(ir)
    json.loads(ir.model_dump_json())  # plain JSON


def test_hash_ignores_whitespace_comments_and_spelling():
    a = parse()
    spaced = BASE.replace("\n", "\n\n  # a comment\n").replace("4 * d_model", "256")
    b = txdsl.parse(spaced)
    assert a.hash() == b.hash()
    c = parse("model m extends base { decoder { ffn.hidden = 255 } }")
    assert c.hash() != a.hash()


def test_spans_survive_but_do_not_count():
    ir = parse()
    comp = ir.decoder.layers[0].attention
    assert comp.span is not None and (comp.span.line, comp.span.column) == (11, 17)
    assert "span" not in ir.model_dump_json()


def test_encoder_decoder():
    ir = txdsl.parse("""model s2s {
      d_model = 32
      embedding { tokens = 50 }
      encoder(2) { norm = layernorm; attention = full(heads: 4); ffn = mlp(hidden: 64) }
      decoder(3) { norm = layernorm; attention = full(heads: 4); cross_attention = full(heads: 4)
                   ffn = mlp(hidden: 64) }
      head = lm(tied: true)
    }""")
    assert ir.is_encoder_decoder and ir.encoder.causal is False and ir.decoder.causal is True
    assert all(layer.cross_attention is not None for layer in ir.decoder.layers)


def test_head_forms():
    ir = parse("model m extends base { heads { cls = classifier(classes: 3) } }")
    assert [h.name for h in ir.heads] == ["lm", "cls"]
    ir2 = parse("model m extends base { head = token_classifier(classes: 5) }")
    assert [h.name for h in ir2.heads] == ["token_classifier"]


def test_errors_carry_location():
    with pytest.raises(SpecError) as info:
        parse("model m extends base { decoder { attention.heads = 3 } }")
    err = info.value
    assert err.line is not None and err.column is not None
    assert "d_model (64) is not divisible by heads (3)" in err.message


def test_none_is_no_value_in_arguments():
    ir = parse("model m extends base { decoder { attention = full(heads: heads, kv_heads: none) } }")
    assert ir.decoder.layers[0].attention.args["kv_heads"] is None


def test_a_very_long_import_chain_is_an_error_not_a_recursion(tmp_path: Path):
    n = 200
    for i in range(n):
        body = f'import "f{i + 1}.tx"\n' if i < n - 1 else ""
        (tmp_path / f"f{i}.tx").write_text(body + f"model m{i} {{ d_model = 8 }}\n")
    with pytest.raises(SpecError, match="imports nested more than 64 files deep"):
        txdsl.parse_file(tmp_path / "f0.tx")
