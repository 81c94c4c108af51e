"""Decoding with the constant-size recurrent state == the full forward, for 300 tokens.

A tiny decoder per kind: greedy ``generate`` with the recurrent state, then one
forward over the generated sequence (no state): its argmax is every generated
token and the step-by-step logits equal it, and the state holds the same bytes after
300 tokens as after 1 (what ``state_elements`` says).
"""

from __future__ import annotations

import pytest
import torch

import txdsl
from decode_checks import (assert_left_padded_row_decodes_alone,
                           assert_steps_equal_the_full_forward, prompt)
from txdsl_attention.linear import RecurrentState

TINY = """
model tiny {{
  vocab = 50; d_model = 32; heads = 4; layers = 2; context = 320
  embedding {{ tokens = vocab{embed} }}
  decoder(layers) {{
    residual = pre; norm = layernorm{position}
    attention = {attention}
    ffn = mlp(hidden: 64, act: gelu)
    final_norm = layernorm
  }}
  heads {{ lm = lm(tied: true) }}
}}
"""
KINDS = {
    "linear": ("linear(heads: heads)", "; position = learned(max_len: context)", ""),
    "performer": ("performer(heads: heads, features: 32)", "", "; position = rope"),
    "cosformer": ("cosformer(heads: heads)", "; position = learned(max_len: context)", ""),
}
NEW = 300


@pytest.fixture(scope="module", params=list(KINDS))
def decoder(request):
    attention, embed, position = KINDS[request.param]
    built = txdsl.build(TINY.format(attention=attention, embed=embed, position=position),
                        backend="eager", seed=0)
    return request.param, built.module.eval()


def test_greedy_generate_with_the_state_equals_recomputing(decoder):
    kind, model = decoder
    assert_steps_equal_the_full_forward(model, NEW, kind)


@torch.no_grad()
def test_the_state_does_not_grow(decoder):
    kind, model = decoder
    x = prompt()
    out = model(x[:, :1], use_cache=True)
    cache = out.past_key_values
    states = cache.stack.self_attention
    assert all(isinstance(s, RecurrentState) for s in states)
    before = cache.stack.nbytes()
    for t in range(1, 5):
        model(x[:, t:t + 1], past_key_values=cache, use_cache=True)
    cache.stack.ensure(10_000)  # a longer capacity costs nothing
    assert cache.stack.nbytes() == before
    layer_elements = {"linear": 4 * 8 * (8 + 1), "performer": 4 * 32 * (8 + 1),
                      "cosformer": 4 * 16 * (8 + 1)}[kind]  # H * F * (hd + 1)
    assert before == 2 * 2 * layer_elements * 4  # 2 layers, batch 2, float32


def test_left_padded_batch_decodes_as_each_row_alone(decoder):
    assert_left_padded_row_decodes_alone(decoder[1])
