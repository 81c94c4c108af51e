"""Ring-buffer decoding of a sliding window == the uncached forward, token for token.

A tiny GPT-2-shaped spec (``specs/gpt2_local.tx``'s structure: a window in 3 of 4
layers) with window 64 generates 300 tokens greedily with the ring-buffer cache and
without any cache (the whole sequence re-run each step); the tokens must agree, the
logits of the cached steps must equal the uncached forward's, and the decode state
must not grow with the generated length.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from txdsl.back.construct import construct
from txdsl.sdk import Dims
from txdsl.sdk.cache import RingKV, StaticKV
from txdsl_attention.sparse import LocalArgs

SPECS = Path(__file__).resolve().parents[3] / "specs"
TINY = """import "gpt2_local.tx"
model tiny extends gpt2_local {{
  vocab = 97; d_model = 32; heads = 4; layers = 4; context = 512; window = {window}; drop = 0.0
  {extra}
}}
"""


def tiny(registry, window: int = 64, extra: str = ""):
    ir = txdsl.parse(TINY.format(window=window, extra=extra), base_dir=str(SPECS))
    torch.manual_seed(0)
    model = construct(ir, registry=registry).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # larger weights: a wrong key would change the argmax
    return model


@pytest.fixture(scope="module")
def model(registry):
    return tiny(registry)


def test_ring_state_is_bounded(model):
    cache = model.new_cache(1, 400)
    kinds = [type(s) for s in cache.stack.self_attention]
    assert kinds == [StaticKV, RingKV, RingKV, RingKV]  # layer 0 full, 1..3 windowed
    ring = cache.stack.self_attention[1]
    assert ring.k.shape[2] == 64 + 1  # window slots + one scratch, whatever the length
    small = model.new_cache(1, 100).stack.self_attention[1]
    assert small.nbytes() == ring.nbytes()
    # what txdsl show reports: the window layer's state_elements, bounded
    args = LocalArgs(heads=4, window=64)
    dims = Dims(d_model=32, width=32, embed_size=32, context=512)
    assert args.state_elements(dims, 100) == args.state_elements(dims, 10_000) == 2 * 32 * 65


@torch.no_grad()
def test_generate_300_tokens_ring_equals_uncached(model):
    prompt = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(1))
    cached = model.generate(prompt, 300)
    uncached = model.generate(prompt, 300, use_cache=False)
    assert cached.shape == (2, 305)
    assert torch.equal(cached, uncached)


@torch.no_grad()
def test_forward_step_by_step_equals_uncached_forward(model):
    ids = torch.randint(0, 97, (1, 300), generator=torch.Generator().manual_seed(2))
    want = model(ids).logits  # (1, 300, V)
    cache = model.new_cache(1, 300)
    steps = [model(ids[:, :70], past_key_values=cache, use_cache=True).logits]  # > window
    for t in range(70, 300):
        steps.append(model(ids[:, t:t + 1], past_key_values=cache, use_cache=True).logits)
    got = torch.cat(steps, dim=1)
    assert (got - want).abs().max() < 1e-4


@torch.no_grad()
def test_global_tokens_stay_cached(registry):
    """A window of 8 plus 2 leading global tokens: the ring keeps the 2 as sinks."""
    extra = ("decoder { layer[1::4, 2::4, 3::4] { attention = sparse(heads: heads, "
             "window: window, global_tokens: 2) } }")
    m = tiny(registry, window=8, extra=extra)
    ring = m.new_cache(1, 200).stack.self_attention[1]
    assert isinstance(ring, RingKV) and ring.sinks == 2 and ring.k.shape[2] == 2 + 8 + 1
    ids = torch.randint(0, 97, (1, 120), generator=torch.Generator().manual_seed(3))
    want = m(ids).logits
    cache = m.new_cache(1, 120)
    got = torch.cat([m(ids[:, t:t + 1], past_key_values=cache, use_cache=True).logits
                     for t in range(120)], dim=1)
    assert (got - want).abs().max() < 1e-4
    prompt = ids[:, :3]
    assert torch.equal(m.generate(prompt, 100), m.generate(prompt, 100, use_cache=False))


@torch.no_grad()
def test_longformer_decodes_with_a_ring_and_cached_global_tokens(registry):
    """Longformer in a causal stack: window 8 + 2 global tokens (own projections); the ring
    keeps the window and the 2 global keys; the prompt holds the global queries."""
    extra = ("decoder { layer[1::4, 2::4, 3::4] { attention = longformer(heads: heads, "
             "window: window, global_tokens: 2) } }")
    m = tiny(registry, window=8, extra=extra)
    ring = m.new_cache(1, 200).stack.self_attention[1]
    assert isinstance(ring, RingKV) and ring.sinks == 2 and ring.k.shape[2] == 2 + 8 + 1
    ids = torch.randint(0, 97, (1, 90), generator=torch.Generator().manual_seed(4))
    want = m(ids).logits
    cache = m.new_cache(1, 90)
    steps = [m(ids[:, :5], past_key_values=cache, use_cache=True).logits]
    steps += [m(ids[:, t:t + 1], past_key_values=cache, use_cache=True).logits
              for t in range(5, 90)]
    assert (torch.cat(steps, dim=1) - want).abs().max() < 1e-4
    prompt = ids[:, :3]
    assert torch.equal(m.generate(prompt, 60), m.generate(prompt, 60, use_cache=False))
    cache = m.new_cache(1, 90)
    m(ids[:, :1], past_key_values=cache, use_cache=True)
    with pytest.raises(ValueError, match="starts at position 0"):
        m(ids[:, 1:2], past_key_values=cache, use_cache=True)  # slot 1: a global query
