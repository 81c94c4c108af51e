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


def prompt(B: int = 2, T: int = 5) -> torch.Tensor:
    return torch.randint(1, 50, (B, T), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_greedy_generate_with_the_state_equals_recomputing(decoder):
    kind, model = decoder
    x = prompt()
    cached = model.generate(x, NEW)
    assert cached.shape == (2, 5 + NEW)
    # token for token: the step-by-step logits are the full forward's
    out = model(cached[:, :5], use_cache=True)
    cache, steps = out.past_key_values, [out.logits]
    for t in range(5, 5 + NEW - 1):
        out = model(cached[:, t:t + 1], past_key_values=cache, use_cache=True)
        steps.append(out.logits)
    full = model(cached[:, :-1]).logits
    err = (torch.cat(steps, dim=1) - full).abs().max().item()
    assert err < 1e-4, f"{kind}: max |step - full| = {err:.2e}"
    # recomputing the whole prefix picks every generated token (greedy without a state)
    assert torch.equal(full[:, 4:].argmax(-1), cached[:, 5:])


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


@torch.no_grad()
def test_left_padded_batch_decodes_as_each_row_alone(decoder):
    kind, model = decoder
    x = prompt(T=6)
    mask = torch.ones_like(x)
    mask[1, :2] = 0
    got = model.generate(x.masked_fill(mask == 0, 0), 12, attention_mask=mask)
    alone = model.generate(x[1:, 2:], 12)
    assert torch.equal(got[1, 2:], alone[0])
