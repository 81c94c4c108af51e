"""Causal Luna decodes with a constant-size state (its code's accumulated matrices,
:class:`~txdsl_attention.lowrank.luna.LunaState`) == the full forward, for 300 tokens;
the state doesn't grow, and a left-padded row decodes as it does alone."""

from __future__ import annotations

import pytest
import torch

import txdsl
from decode_checks import (assert_left_padded_row_decodes_alone,
                           assert_steps_equal_the_full_forward, prompt, tiny_spec)
from txdsl_attention.lowrank.luna import LunaState

ATTENTION = "luna(heads: heads, p: 6)"
NEW = 300


@pytest.fixture(scope="module")
def model():
    return txdsl.build(tiny_spec(ATTENTION), backend="eager", seed=0).module.eval()


def test_greedy_generate_with_the_state_equals_recomputing(model):
    assert_steps_equal_the_full_forward(model, NEW, "luna")


@torch.no_grad()
def test_the_state_does_not_grow(model):
    x = prompt()
    cache = model(x[:, :1], use_cache=True).past_key_values
    assert all(isinstance(s, LunaState) for s in cache.stack.self_attention)
    before = cache.stack.nbytes()
    for t in range(1, 5):
        model(x[:, t:t + 1], past_key_values=cache, use_cache=True)
    cache.stack.ensure(10_000)  # a longer capacity costs nothing
    assert cache.stack.nbytes() == before
    layer_elements = 2 * 4 * 8 * 6 + 1  # (H, hd, l) + (H, l, hd) + the count
    assert before == 2 * 2 * layer_elements * 4  # 2 layers, batch 2, float32


def test_left_padded_batch_decodes_as_each_row_alone(model):
    assert_left_padded_row_decodes_alone(model)


def test_a_bidirectional_luna_refuses_a_decode_state():
    from txdsl.sdk.attention import AttentionMask

    encoder = txdsl.build(tiny_spec(ATTENTION, stack="encoder"),
                          backend="eager", seed=0).module.encoder
    attention = encoder.layers[0].attention
    with pytest.raises(ValueError, match="bidirectional stack"):
        attention(torch.randn(1, 2, 32), mask=AttentionMask(), cache=attention.new_state(1, 4))
