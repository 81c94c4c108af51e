"""``layer[...]`` selectors: slices clip as in Python, explicit indices stay strict."""

from __future__ import annotations

import pytest

import txdsl
from txdsl import SpecError

PARENT = """
model parent {
  vocab = 100; d_model = 64; heads = 4; layers = 8
  embedding { tokens = vocab }
  decoder(layers) {
    norm = layernorm()
    attention = full(heads: heads)
    ffn = mlp(hidden: 256)
    layer[3::4] { ffn = none }
  }
  head = lm(tied: true)
}
"""


def no_ffn(ir) -> set[int]:
    return {layer.index for layer in ir.decoder.layers if layer.ffn is None}


def test_inherited_stride_holds_in_a_shrunk_child():
    assert no_ffn(txdsl.parse(PARENT)) == {3, 7}
    child = txdsl.parse(PARENT + "model child extends parent { layers = 2 }")
    assert len(child.decoder.layers) == 2
    assert no_ffn(child) == set()  # layer[3::4] selects nothing in 2 layers: allowed
    four = txdsl.parse(PARENT + "model child extends parent { layers = 4 }")
    assert no_ffn(four) == {3}


@pytest.mark.parametrize("selector, chosen", [
    ("1:9", {1}), ("-9:1", {0}), ("5:", set()), (":-5", set()), ("::-1", {0, 1}),
    ("9::-1", {0, 1}), ("-100:100:3", {0}),
])
def test_slices_clip_like_python(selector, chosen):
    ir = txdsl.parse(PARENT + f"model c extends parent {{ layers = 2\n"
                              f"decoder {{ layer[{selector}] {{ norm = rmsnorm }} }} }}")
    rms = {layer.index for layer in ir.decoder.layers if layer.norm.kind == "rmsnorm"}
    assert rms == chosen == set(range(2)[slice(*[int(p) if p else None
                                                  for p in selector.split(":")])])


@pytest.mark.parametrize("selector, bad", [("2", 2), ("-3", -3), ("0, 5", 5)])
def test_an_explicit_index_out_of_range_is_an_error(selector, bad):
    with pytest.raises(SpecError) as info:
        txdsl.parse(PARENT + f"model c extends parent {{ layers = 2\n"
                             f"decoder {{ layer[{selector}] {{ ffn = none }} }} }}")
    assert info.value.message == (f"layer index {bad} is out of range: the decoder has 2 "
                                  f"layers (0..1)")


def test_a_zero_step_is_still_an_error():
    with pytest.raises(SpecError, match="a slice step can't be 0"):
        txdsl.parse(PARENT + "model c extends parent { decoder { layer[::0] { ffn = none } } }")


@pytest.mark.parametrize("selector, layers, chosen", [
    ("layers // 2:", 8, {4, 5, 6, 7}), ("layers / 2:", 8, {4, 5, 6, 7}),
    ("layers // 2:", 2, {1}), ("layers - 1", 8, {7})])
def test_a_selector_may_be_computed_from_parameters(selector, layers, chosen):
    ir = txdsl.parse(PARENT + f"model c extends parent {{ layers = {layers}\n"
                              f"decoder {{ layer[{selector}] {{ norm = rmsnorm }} }} }}")
    assert {layer.index for layer in ir.decoder.layers if layer.norm.kind == "rmsnorm"} == chosen


def test_a_fractional_index_says_how_to_round():
    with pytest.raises(SpecError) as info:
        txdsl.parse(PARENT + "model c extends parent { layers = 5\n"
                             "decoder { layer[layers / 2:] { norm = rmsnorm } } }")
    assert info.value.message == "a layer index must be an integer, not 2.5"
    assert "layers // 2" in info.value.hint
