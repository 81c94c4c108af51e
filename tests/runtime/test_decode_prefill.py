"""The prefill's causal fast path and compiled steps that keep their graphs to themselves.

Tiny GPT-2-shaped model (2 layers, d_model 32, vocab 96), weights redrawn at std 0.3.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list
from torch._dynamo.testing import CompileCounterWithBackend

import txdsl
from txdsl.runtime.decode import CompiledStep, eager_step
from txdsl.runtime.generate import _prefill, generate

SPEC = """
model tiny_gpt2 {
  vocab = 96
  d_model = 32
  heads = 2
  layers = 2
  context = 128
  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }
  decoder(layers) {
    residual = pre
    norm = layernorm(eps: 1e-5)
    attention = full(heads: heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu_tanh)
    final_norm = layernorm(eps: 1e-5)
  }
  head = lm(tied: true)
}
"""


@pytest.fixture(scope="module")
def model():
    m = txdsl.build(SPEC, progress=False).module.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m


def prompt(B: int = 3, T: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 96, (B, T), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_prefill_is_plain_causal_and_fills_the_cache_as_a_direct_prefill(model):
    ids = prompt()
    masks = []
    hook = model.decoder.layers[0].attention.register_forward_pre_hook(
        lambda _, a, kw: masks.append(kw["mask"]), with_kwargs=True)
    try:
        fast = model.new_cache(3, 64)
        fast.stack.planned = True
        got = _prefill(model, ids, None, None, fast).logits
    finally:
        hook.remove()
    assert len(masks) == 1 and masks[0].is_plain_causal(10, 10)  # SDPA's is_causal path
    direct = model.new_cache(3, 64)
    direct.stack.planned = True
    want = model(ids, past_key_values=direct, use_cache=True, cache_position=torch.arange(10),
                 logits_to_keep=1).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for a, b in zip(fast.stack.self_attention, direct.stack.self_attention):
        torch.testing.assert_close(a.k, b.k, atol=1e-5, rtol=1e-5)  # unwritten slots: zeros
        torch.testing.assert_close(a.v, b.v, atol=1e-5, rtol=1e-5)
    assert torch.equal(fast.stack.key_padding, direct.stack.key_padding)
    assert torch.equal(fast.stack.key_positions, direct.stack.key_positions)
    assert int(fast.stack.length) == int(direct.stack.length) == 10
    # and decoding from it gives the uncached tokens
    assert torch.equal(model.generate(ids, 30), model.generate(ids, 30, use_cache=False))


@torch.no_grad()
def test_padded_prefill_keeps_the_key_padding_mask(model):
    ids = prompt()
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    masks = []
    hook = model.decoder.layers[0].attention.register_forward_pre_hook(
        lambda _, a, kw: masks.append(kw["mask"]), with_kwargs=True)
    try:
        model.generate(ids, 1, attention_mask=mask)
    finally:
        hook.remove()
    assert masks[0].key_padding is not None and not masks[0].is_plain_causal(10, 64)


@torch.no_grad()
def test_each_compiled_step_keeps_its_own_graphs(model):
    """Two steps (two builds, dtypes or batch sizes of one process) don't share dynamo's
    per-code-object cache: neither walks the other's guards nor eats its recompile limit."""
    a, b = CompileCounterWithBackend("aot_eager"), CompileCounterWithBackend("aot_eager")
    step_a, step_b = CompiledStep(backend=a), CompiledStep(backend=b)
    x = prompt(B=2)
    want = model.generate(x, 12)
    assert torch.equal(generate(model, x, 12, step=step_a), want)
    assert torch.equal(generate(model, x, 12, step=step_b), want)
    assert a.frame_count == b.frame_count == 1  # b compiled its own graph
    code_a = step_a._compiled._torchdynamo_orig_callable.__code__
    code_b = step_b._compiled._torchdynamo_orig_callable.__code__
    assert code_a is not code_b and code_a is not eager_step.__code__
    assert len(_debug_get_cache_entry_list(code_a)) == 1
    assert len(_debug_get_cache_entry_list(code_b)) == 1
    assert not _debug_get_cache_entry_list(eager_step.__code__)
