"""Decoding with memory tokens (the Memory Transformer, Burtsev et al. 2020) in a causal
stack, ``prepend`` and ``dedicated``: the cache holds the memory in slots 0..N-1, so a
cached step == the uncached forward (logits of every step, greedy tokens for 50 steps,
left-padded batch), the aot_eager-compiled step compiles once; packed documents each see
the memory as if alone; the decode-state estimate counts the N slots."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import txdsl
from txdsl.front.estimate import estimate
from txdsl.plugins import get_registry
from txdsl.runtime.decode import CompiledStep
from txdsl.runtime.generate import generate

N = 3
SPEC = """
model mem_lm {{
  vocab = 40; d_model = 32; heads = 4; context = 96
  embedding {{ tokens = vocab }}
  decoder(2) {{ norm = layernorm; position = rope(); attention = full(heads: heads)
               ffn = mlp(hidden: 64); {memory} }}
  head = lm
}}
"""
FORMS = ("prepend", "dedicated")


def build(memory: str):
    model = txdsl.build(SPEC.format(memory=memory), backend="eager", seed=0).module.eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # weights large enough that a wrong key or position shows
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


@pytest.fixture(scope="module")
def models():
    return {form: build(f"memory_tokens = {N}; memory_form = {form}") for form in FORMS}


def left_padded(B: int = 3, T: int = 7):
    ids = torch.randint(1, 40, (B, T), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :4] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("form", FORMS)
def test_every_cached_step_is_the_full_forward(form, models):
    model = models[form]
    ids = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(3))
    cache = model.new_cache(2, 16)
    assert cache.stack.capacity == 16 + N and cache.get_seq_length() == 0
    with torch.no_grad():
        full = model(input_ids=ids).logits  # (2, 12, V)
        got = [model(input_ids=ids[:, :5], past_key_values=cache, use_cache=True).logits]
        assert cache.get_seq_length() == 5 and int(cache.stack.length) == N + 5
        for t in range(5, 12):
            got.append(model(input_ids=ids[:, t:t + 1], past_key_values=cache,
                             use_cache=True).logits)
    diff = (torch.cat(got, 1) - full).abs().max() / full.abs().max()
    print(f"{form}: max |cached - full| / max |full| = {diff:.1e}")
    assert diff < 1e-5, diff
    assert bool(cache.stack.key_padding[:, :N + 12].all())


@pytest.mark.parametrize("form", FORMS)
def test_greedy_decoding_is_the_uncached_forward_left_padded(form, models):
    model = models[form]
    ids, mask = left_padded()
    cached = model.generate(ids, 50, attention_mask=mask)
    uncached = model.generate(ids, 50, attention_mask=mask, use_cache=False)
    assert cached.shape == (3, 57)
    assert torch.equal(cached, uncached)
    assert min(len(set(row[7:].tolist())) for row in cached) > 3  # not one token repeated


@pytest.mark.parametrize("form", FORMS)
def test_the_compiled_step_compiles_once(form, models):
    model = models[form]
    ids, mask = left_padded()
    counter = CompileCounterWithBackend("aot_eager")
    step = CompiledStep(backend=counter)
    want = model.generate(ids, 20, attention_mask=mask)
    got = generate(model, ids, 20, attention_mask=mask, step=step)
    frames = counter.frame_count
    assert torch.equal(got, want) and frames == 1
    again = generate(model, ids, 30, attention_mask=mask, step=step)
    assert counter.frame_count == frames  # another call of the same capacity: no recompile
    assert torch.equal(again[:, :27], want)


@pytest.mark.parametrize("form", FORMS)
def test_packed_documents_each_see_the_memory_as_if_alone(form, models):
    model = models[form]
    ids = torch.randint(0, 40, (1, 9), generator=torch.Generator().manual_seed(4))
    docs = torch.tensor([[0] * 5 + [1] * 4])
    with torch.no_grad():
        packed = model(input_ids=ids, document_ids=docs).logits
        alone = torch.cat([model(input_ids=ids[:, :5]).logits,
                           model(input_ids=ids[:, 5:]).logits], 1)
        crossed = model(input_ids=ids).logits
    print(f"{form}: max |packed - alone| / max = {(packed - alone).abs().max() / alone.abs().max():.1e}")
    assert (packed - alone).abs().max() < 1e-5 * alone.abs().max()
    assert (crossed[:, 5:] - alone[:, 5:]).abs().max() > 1e-2  # the documents do matter


def test_a_bidirectional_stack_refuses_documents_and_a_cache():
    text = SPEC.format(memory=f"memory_tokens = {N}; causal = false").replace("decoder", "encoder")
    model = txdsl.build(text, backend="eager", seed=0).module.eval()
    ids = torch.randint(0, 40, (1, 6))
    with pytest.raises(ValueError, match="document_ids .* need a causal stack"):
        model(input_ids=ids, document_ids=torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="only in a causal stack"):
        model.encoder(torch.randn(1, 6, 32), cache=model.encoder.new_cache(1, 8))


def test_the_decode_state_estimate_counts_the_memory_slots():
    reg = get_registry()
    with_mem = estimate(txdsl.parse(SPEC.format(memory=f"memory_tokens = {N}")), reg, seq_len=64)
    plain = estimate(txdsl.parse(SPEC.format(memory="")), reg, seq_len=64)
    per_slot = 2 * 2 * 32 * 4  # layers x (k, v) x d_model x float32 bytes
    assert plain.kv_cache_bytes == 64 * per_slot
    assert with_mem.kv_cache_bytes == (64 + N) * per_slot
    model = build(f"memory_tokens = {N}")
    assert model.new_cache(1, 64).stack.nbytes() == with_mem.kv_cache_bytes
