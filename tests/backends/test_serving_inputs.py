"""What an exported model takes: the full input set, named axes, and InputSpec's refusals.

No export here (fast): the inputs of the zoo's GPT-2, BERT, T5 and ViT shrunk, and
:class:`txdsl.backends.InputSpec` checked against a real model's limits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from spec_shrink import shrink_text
from txdsl.back.inputs import example_inputs, padding_mask, serving_inputs
from txdsl.backends import InputSpec, input_axes, input_spec
from txdsl.runtime.boundary import Limits

SPECS = Path(__file__).resolve().parents[2] / "specs"
MODELS = {"gpt2": "gpt2.tx", "bert": "bert.tx", "t5_small": "t5.tx", "vit": "vit.tx"}


def tiny_ir(name: str, registry):
    path = SPECS / MODELS[name]
    ir = txdsl.parse_file(path, model=name, registry=registry)
    return txdsl.parse(shrink_text(path, name, ir.params), SPECS, registry=registry)


@pytest.mark.parametrize("name,want", [
    ("gpt2", ["input_ids", "attention_mask"]),
    ("bert", ["input_ids", "attention_mask", "token_type_ids"]),
    ("t5_small", ["input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"]),
    ("vit", ["pixel_values"]),
])
def test_serving_inputs_are_every_input_the_model_takes(name, want, registry):
    ir = tiny_ir(name, registry)
    assert serving_inputs(ir, registry) == want
    x = example_inputs(ir, registry, batch=2, full=True)
    assert list(x) == want
    if "decoder_input_ids" in x:  # the decoder's length differs, so export can't tie them
        assert x["decoder_input_ids"].shape[1] != x["input_ids"].shape[1]
    # the model takes them all at once
    assert txdsl.build(ir, progress=False).module(**x).last_hidden_state is not None


def test_the_example_mask_has_a_padded_row():
    mask = padding_mask(2, 16)
    assert mask[0].tolist() == [1] * 16
    assert mask[1].tolist() == [1] * 12 + [0] * 4
    assert padding_mask(1, 5).tolist() == [[1] * 5]


def test_input_axes_name_batch_sequence_and_decoder_sequence():
    assert input_axes("input_ids", 2, False) == ["batch", "sequence"]
    assert input_axes("decoder_attention_mask", 2, False) == ["batch", "decoder_sequence"]
    assert input_axes("pixel_values", 4, True) == ["batch", None, None, None]
    assert input_axes("features", 3, True) == ["batch", "sequence", None]
    x = {"input_ids": torch.zeros(2, 5, dtype=torch.long)}
    assert input_spec(x) == {"input_ids": {"shape": [2, 5], "dtype": "int64"}}
    assert input_spec(x, dynamic=True)["input_ids"]["axes"] == ["batch", "sequence"]


@pytest.fixture(scope="module")
def bert_spec(registry):
    ir = tiny_ir("bert", registry)
    x = example_inputs(ir, registry, batch=2, full=True)
    return InputSpec(input_spec(x, dynamic=True), Limits.from_ir(ir), what="onnx model"), ir


def test_input_spec_fills_the_optional_inputs_as_the_model_call_does(bert_spec):
    spec, ir = bert_spec
    ids = torch.randint(0, 211, (3, 7))
    got = spec.check((), {"input_ids": ids, "attention_mask": None})
    assert got["attention_mask"].tolist() == [[1] * 7] * 3
    assert got["token_type_ids"].tolist() == [[0] * 7] * 3


@pytest.mark.parametrize("inputs,error,match", [
    ({}, TypeError, r"this onnx model needs input_ids \(it takes input_ids \(batch, sequence\) "
                    r"int64; attention_mask"),
    ({"input_ids": torch.zeros(2, 4, dtype=torch.long), "position_ids": torch.zeros(1, 4)},
     TypeError, r"takes input_ids, attention_mask, token_type_ids .*not position_ids"),
    ({"input_ids": torch.zeros(2, 4, dtype=torch.int32)}, TypeError,
     r"input_ids has dtype torch.int32, but this onnx model was exported for torch.int64"),
    ({"input_ids": torch.zeros(2, 4)}, TypeError, r"input_ids has dtype torch.float32"),
    ({"input_ids": [[1, 2]]}, TypeError, r"input_ids must be a torch.Tensor, got list"),
    ({"input_ids": torch.zeros(4, dtype=torch.long)}, ValueError,
     r"input_ids must have 2 dimensions, input_ids \(batch, sequence\) int64, got shape \(4,\)"),
    ({"input_ids": torch.zeros(2, 4, dtype=torch.long),
      "attention_mask": torch.ones(2, 3, dtype=torch.long)}, ValueError,
     r"attention_mask must be \(2, 4\) to match input_ids, got \(2, 3\)"),
    ({"input_ids": torch.zeros(2, 4, dtype=torch.long),
      "token_type_ids": torch.full((2, 4), 2)}, ValueError, r"token_type_ids contains 2"),
    ({"input_ids": torch.full((2, 4), 211)}, ValueError, r"input_ids contains 211"),
    ({"input_ids": torch.zeros(1, 33, dtype=torch.long)}, ValueError,
     r"input_ids has 33 tokens per row, but the model's context is 32"),
])
def test_input_spec_refuses_what_the_file_cant_take(bert_spec, inputs, error, match):
    spec, _ = bert_spec
    with pytest.raises(error, match=match):
        spec.check((), inputs)


def test_input_spec_refuses_positional_inputs_and_fixed_dimensions():
    spec = InputSpec({"pixel_values": {"shape": [2, 3, 8, 8], "dtype": "float32",
                                       "axes": ["batch", None, None, None]}}, what="aot package")
    with pytest.raises(TypeError, match=r"keyword inputs only \(pixel_values\), got 1 positional"):
        spec.check((torch.zeros(1, 3, 8, 8),), {})
    with pytest.raises(ValueError, match=r"pixel_values must have shape pixel_values \(batch, 3, "
                                         r"8, 8\) float32 \(named dimensions vary\), got "
                                         r"\(1, 3, 9, 9\)"):
        spec.check((), {"pixel_values": torch.zeros(1, 3, 9, 9)})
    assert spec.check((), {"pixel_values": torch.zeros(5, 3, 8, 8)})["pixel_values"].shape[0] == 5


def test_input_spec_without_limits_still_ties_named_dimensions():
    spec = InputSpec({"input_ids": {"shape": [2, 4], "dtype": "int64"},
                      "decoder_input_ids": {"shape": [2, 3], "dtype": "int64"}})
    ok = {"input_ids": torch.zeros(2, 9, dtype=torch.long),
          "decoder_input_ids": torch.zeros(2, 1, dtype=torch.long)}
    assert spec.check((), ok) == ok  # the two sequences vary on their own
    with pytest.raises(ValueError, match=r"decoder_input_ids has batch 3 \(dim 0\), but "
                                         r"input_ids has 2"):
        spec.check((), {**ok, "decoder_input_ids": torch.zeros(3, 1, dtype=torch.long)})
    static = InputSpec({"input_ids": {"shape": [2, 4], "dtype": "int64"}}, dynamic=False)
    with pytest.raises(ValueError, match=r"input_ids \(2, 4\) int64"):
        static.check((), {"input_ids": torch.zeros(2, 5, dtype=torch.long)})
