"""Causal memory-compressed attention decodes with its own state (finished blocks' slots
and the block being filled, :mod:`txdsl_attention.lowrank.compressed_decode`) == the full
forward: 300 greedy tokens, and prefill chunks of any size from any position with left
padding; the state is 1/stride of a KV cache plus a block."""

from __future__ import annotations

import pytest
import torch

import txdsl
from decode_checks import (assert_left_padded_row_decodes_alone,
                           assert_steps_equal_the_full_forward, prompt, tiny_spec)
from txdsl.sdk.attention import AttentionMask
from txdsl_attention.lowrank.compressed_decode import CompressedState

ATTENTION = "compressed(heads: heads, kv_heads: 2, stride: 3)"


@pytest.fixture(scope="module")
def model():
    model = txdsl.build(tiny_spec(ATTENTION), backend="eager", seed=0).module.eval()
    with torch.no_grad():  # scaled weights: near-tied logits would hide a wrong token
        for p in model.parameters():
            p.mul_(2.0)
    return model


def test_greedy_generate_with_the_state_equals_recomputing(model):
    assert_steps_equal_the_full_forward(model, 300, "compressed")


@torch.no_grad()
@pytest.mark.parametrize("chunks", [(1,) * 8, (3, 3, 2), (2, 4, 1, 1), (5, 3), (8,)])
def test_chunks_from_any_position_with_padding_equal_one_pass(model, chunks):
    x = prompt(T=8)
    mask = torch.ones_like(x)
    mask[1, :3] = 0  # left padding, across the first block boundary
    full = model(x, attention_mask=mask).logits
    cache, steps, t = model.new_cache(2, 8), [], 0
    for n in chunks:
        out = model(x[:, t:t + n], attention_mask=mask[:, :t + n], past_key_values=cache,
                    use_cache=True)
        steps.append(out.logits)
        t += n
    got = torch.cat(steps, dim=1)
    real = mask.bool()
    assert (got[real] - full[real]).abs().max() < 1e-4


def test_a_row_left_padded_by_whole_blocks_decodes_alone(model):
    """Blocks are cut at absolute positions, so padding by a multiple of ``stride`` keeps
    the row's blocks; its all-padding slots are masked (a slot of zeroed keys is the conv's
    bias, not nothing), in the prefill's causal form and in the state alike."""
    assert_left_padded_row_decodes_alone(model, pad=3)
    assert_left_padded_row_decodes_alone(model, pad=6)


@torch.no_grad()
def test_an_all_padding_slot_is_masked_in_the_forward(model):
    x = prompt(T=9)
    mask = torch.ones_like(x)
    mask[1, :3] = 0
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # the row's own positions, as alone
    padded = model(x, attention_mask=mask, position_ids=positions).logits[1, 3:]
    alone = model(x[1:, 3:]).logits[0]
    assert (padded - alone).abs().max() < 1e-4


def test_the_state_is_a_third_of_a_kv_cache(model):
    cache = model.new_cache(1, 300)
    states = cache.stack.self_attention
    assert all(isinstance(s, CompressedState) for s in states)
    per_layer = (2 * 16 + 1) * (299 // 3 + 2) + (2 * 16 + 1) * 3  # slots, the block; flags
    assert cache.stack.nbytes() == 2 * per_layer * 4  # 2 layers, float32
    kv = 2 * 2 * 16 * 300 * 4  # what full attention's cache of the same shape holds
    assert cache.stack.nbytes() < 0.4 * kv


def test_a_bidirectional_layer_refuses_the_state():
    encoder = txdsl.build(tiny_spec(ATTENTION, stack="encoder"),
                          backend="eager", seed=0).module.encoder
    attention = encoder.layers[0].attention
    with pytest.raises(ValueError, match="bidirectional stack"):
        attention(torch.randn(1, 2, 32), mask=AttentionMask(), cache=attention.new_state(1, 4))
