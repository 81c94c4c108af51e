"""Per-layer position schemes: ``layer[...] { position = scheme(...) }``. A 2-layer model
with rope in layer 0 and alibi in layer 1 == those layers composed by hand from two
single-scheme models with the same weights; a per-layer rope base likewise; each
distinct scheme computed once per forward; decoding (left padding) == the full forward;
parameters of a per-layer scheme counted once; show --tx round-trips; an embedding-level
scheme or a pairing the layer's attention can't take is a located error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from txdsl.errors import SpecError
from txdsl.front.estimate import estimate
from txdsl.front.unparse import to_tx
from txdsl.plugins import get_registry
from txdsl.sdk.attention import AttentionMask
from txdsl.sdk.positions import PositionContext

SPEC = """
model schemes_tiny {{
  vocab = 40; d_model = 32; heads = 4
  embedding {{ tokens = vocab }}
  decoder({n}) {{ norm = layernorm; position = {position}
               attention = {attention}; ffn = mlp(hidden: 64)
               {layers} }}
  head = lm
}}
"""


def text(position="rope()", layers="layer[1] { position = alibi() }", n=2,
         attention="full(heads: heads)"):
    return SPEC.format(position=position, layers=layers, n=n, attention=attention)


def build(**kw):
    model = txdsl.build(text(**kw), backend="eager", seed=0).module.eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # large enough that a wrong position shows
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


@pytest.fixture(scope="module")
def mixed():
    return build()


def hand_composed(mixed, single: dict[int, str], ids):
    """Layer i run by hand with the position of a model built with ``single[i]`` alone."""
    pos = torch.arange(ids.shape[1])[None]
    with torch.no_grad():
        h = mixed.embedding(ids)
        for i, scheme in single.items():
            other = txdsl.build(text(position=scheme, layers=""), backend="eager",
                                seed=0).module.eval()
            other.load_state_dict(mixed.state_dict(), strict=False)  # the same weights
            ctx = PositionContext.build(other.decoder.position, pos, pos, h.dtype)
            h = other.decoder.layers[i](h, mask=AttentionMask(causal=True), position=ctx)
        return mixed.heads["lm"](h)


def test_rope_then_alibi_is_the_two_layers_composed_by_hand(mixed):
    ids = torch.randint(0, 40, (2, 11), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = mixed(input_ids=ids).logits
    want = hand_composed(mixed, {0: "rope()", 1: "alibi()"}, ids)
    assert (got - want).abs().max() < 1e-5 * want.abs().max()
    wrong = hand_composed(mixed, {0: "rope()", 1: "rope()"}, ids)
    assert (got - wrong).abs().max() > 1e-2 * want.abs().max()  # the scheme matters


def test_a_layer_rope_with_another_base():
    model = build(layers="layer[1] { position.theta = 50.0 }")
    ids = torch.randint(0, 40, (2, 11), generator=torch.Generator().manual_seed(3))
    assert model.decoder.layer_positions[0].theta == 50.0
    with torch.no_grad():
        got = model(input_ids=ids).logits
    want = hand_composed(model, {0: "rope()", 1: "rope(theta: 50.0)"}, ids)
    assert (got - want).abs().max() < 1e-5 * want.abs().max()


def test_each_distinct_scheme_is_computed_once_per_forward():
    model = build(n=4, layers="layer[1, 3] { position = alibi() }")
    assert len(model.decoder.layer_positions) == 1  # layers 1 and 3 share one module
    assert model.decoder.layer_position == [0, 1, 0, 1]
    calls = {"alibi": 0, "rope": 0}
    alibi, rope = model.decoder.layer_positions[0], model.decoder.position
    bias, cos_sin = alibi.bias, rope.cos_sin
    alibi.bias = lambda *a, **k: (calls.__setitem__("alibi", calls["alibi"] + 1), bias(*a, **k))[1]
    rope.cos_sin = lambda *a, **k: (calls.__setitem__("rope", calls["rope"] + 1),
                                    cos_sin(*a, **k))[1]
    with torch.no_grad():
        model(input_ids=torch.randint(0, 40, (1, 6)))
    assert calls == {"alibi": 1, "rope": 1}


def test_decoding_equals_the_full_forward_left_padded(mixed):
    ids = torch.randint(1, 40, (3, 7), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :4] = 0
    ids = ids.masked_fill(mask == 0, 0)
    cached = mixed.generate(ids, 30, attention_mask=mask)
    assert torch.equal(cached, mixed.generate(ids, 30, attention_mask=mask, use_cache=False))
    full = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        want = mixed(input_ids=full).logits
        cache = mixed.new_cache(2, 16)
        steps = torch.cat([mixed(input_ids=full[:, t:t + 1], past_key_values=cache,
                                 use_cache=True).logits for t in range(10)], 1)
    assert (steps - want).abs().max() < 1e-5 * want.abs().max()


def test_parameters_of_a_layer_scheme_are_counted_once():
    kw = dict(position="none", layers="layer[0, 1] { position = shaw(max_distance: 4) }",
              attention="relative(heads: heads)")
    model = build(**kw)
    ir = txdsl.parse(text(**kw))
    assert len(model.decoder.layer_positions) == 1
    assert estimate(ir, get_registry()).params == sum(p.numel() for p in model.parameters())
    assert txdsl.parse(to_tx(ir)) == ir  # show --tx spells it back
    assert txdsl.parse(to_tx(txdsl.parse(text()))) == txdsl.parse(text())


@pytest.mark.parametrize("layers,attention,expect", [
    ("layer[1] { position = learned(max_len: 32) }", "full(heads: heads)",
     "can't be chosen per layer"),
    ("layer[1] { position = shaw(max_distance: 2) }", "full(heads: heads)",
     "attention 'full' (layer 1) can't use position 'shaw'"),
])
def test_an_impossible_layer_scheme_is_a_located_error(layers, attention, expect):
    with pytest.raises(SpecError) as err:
        txdsl.parse(text(layers=layers, attention=attention))
    assert expect in str(err.value) and ":7:" in str(err.value), str(err.value)


def test_the_spec():
    path = Path(__file__).resolve().parents[3] / "specs" / "mixed_positions.tx"
    ir = txdsl.parse_file(path)
    kinds = [layer.position.kind if layer.position else "stack" for layer in ir.decoder.layers]
    assert kinds == ["stack", "stack", "stack", "alibi"] * 2
