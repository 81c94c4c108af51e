"""One real inductor forward and backward over the issue-11 kinds together (moe, persistent
memory, rope yarn scaling, deepnorm, ACT halting over a shared layer, memory tokens), compared
with eager: the one slow test of the family."""

from __future__ import annotations

import pytest
import torch

import txdsl

SPEC = """
model issue11_tiny {
  vocab = 40; d_model = 32; heads = 4; context = 32
  embedding { tokens = vocab }
  decoder(2) {
    residual = deepnorm; norm = layernorm
    position = rope(scaling: yarn, factor: 2.0, original_context: 16)
    attention = persistent(heads: heads, memory: 4)
    ffn = moe(hidden: 32, experts: 4, top_k: 2, capacity_factor: 1.0)
    share = all; halting = act(threshold: 0.9); memory_tokens = 2
  }
  head = lm
}
"""


@pytest.mark.slow
def test_inductor_forward_backward_matches_eager():
    model = txdsl.build(SPEC, backend="eager", seed=0).module.train()
    ids = torch.randint(0, 40, (2, 12))
    out = model(input_ids=ids)
    (out.logits.square().mean() + out.aux_loss).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled = torch.compile(model, backend="inductor")
    got = compiled(input_ids=ids)
    torch.testing.assert_close(got.logits, out.logits, atol=1e-4, rtol=1e-4)
    (got.logits.square().mean() + got.aux_loss).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], atol=1e-4, rtol=1e-3, msg=name)
