"""Per-layer position choice: ``layer[...] { position = none }`` leaves those layers'
attention without the stack's scheme (NoPE layers). A layer with ``none`` == the same
layer run without positions; every layer ``none`` == a stack built without positions;
decoding == the full forward; show --tx round-trips. ``layer[...] { position = scheme }``
(test_layer_schemes.py) gives a layer another scheme."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from txdsl.front.unparse import to_tx
from txdsl.sdk.attention import AttentionMask

SPEC = """
model nope_tiny {{
  vocab = 40; d_model = 32; heads = 4
  embedding {{ tokens = vocab }}
  decoder(3) {{ norm = layernorm; position = {position}
               attention = full(heads: heads); ffn = mlp(hidden: 64)
               {layers} }}
  head = lm
}}
"""


def build(position="rope", layers="layer[1] { position = none }"):
    text = SPEC.format(position=position, layers=layers)
    return txdsl.build(text, backend="eager", seed=0).module.eval()


@pytest.fixture(scope="module")
def mixed():
    return build()


def test_the_ir_marks_only_the_selected_layers():
    ir = txdsl.parse(SPEC.format(position="rope", layers="layer[0, 2] { position = none }"))
    assert [layer.no_position for layer in ir.decoder.layers] == [True, False, True]
    assert txdsl.parse(to_tx(ir)) == ir  # show --tx spells it back


@pytest.mark.parametrize("position", ["rope", "alibi", "shaw(max_distance: 3, per_layer: false)"])
def test_a_layer_with_none_runs_without_positions(position):
    attention = "relative(heads: heads)" if position.startswith("shaw") else "full(heads: heads)"
    model = txdsl.build(SPEC.format(position=position, layers="layer[1] { position = none }")
                        .replace("full(heads: heads)", attention),
                        backend="eager", seed=0).module.eval()
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        h1 = out.hidden_states[1]  # the input of layer 1
        layer = model.decoder.layers[1]
        want = layer(h1, mask=AttentionMask(causal=True), position=None)
        assert layer.uses_position is False
        torch.testing.assert_close(out.hidden_states[2], want, atol=1e-6, rtol=1e-6)
        # and it differs from the same layer with the positions
        from txdsl.sdk.positions import PositionContext
        pos = torch.arange(9)[None]
        ctx = PositionContext.build(model.decoder.position, pos, pos, h1.dtype)
        layer.uses_position = True
        try:
            with_pos = layer(h1, mask=AttentionMask(causal=True), position=ctx)
        finally:
            layer.uses_position = False
        assert (with_pos - want).abs().max() > 1e-5  # small init: small, but not zero


def test_every_layer_none_equals_no_position():
    nope = build(layers="layer[:] { position = none }")
    plain = build(position="none", layers="")
    plain.load_state_dict(nope.state_dict())
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(nope(input_ids=ids).logits, plain(input_ids=ids).logits,
                                   atol=0, rtol=0)


def test_decoding_equals_the_full_forward(mixed):
    ids = torch.randint(0, 40, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :2] = 0
    with torch.no_grad():
        full = mixed(input_ids=ids, attention_mask=mask).logits
        cache = mixed.new_cache(batch=2, capacity=8)
        steps = torch.cat([mixed(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                                 past_key_values=cache, use_cache=True).logits
                           for t in range(8)], 1)
    torch.testing.assert_close(steps[0], full[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steps[1, 2:], full[1, 2:], atol=1e-5, rtol=1e-5)


def test_a_none_layer_may_hold_an_attention_the_position_cannot_serve():
    text = SPEC.format(position="shaw", layers="layer[1] { position = none; "
                       "attention = full(heads: heads) }").replace(
        "attention = full(heads: heads); ffn", "attention = relative(heads: heads); ffn")
    ir = txdsl.parse(text)
    assert ir.decoder.layers[1].attention.kind == "full"


def test_the_spec():
    ir = txdsl.parse_file(Path(__file__).resolve().parents[3] / "specs" / "nope_layers.tx")
    assert [layer.index for layer in ir.decoder.layers if layer.no_position] == [3, 7]
