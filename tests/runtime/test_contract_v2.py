"""The attention contract v2 end to end: packed rows, per-row positions, the static
decode cache, compiled decode steps, masks lowered once, the FlexAttention path."""

from __future__ import annotations

import pytest
import torch

import txdsl
from txdsl.back.construct import construct
from txdsl.sdk import AttentionMask

BASE = """
model m {{
  vocab = 50; d_model = 32; heads = 4; layers = {layers}; context = 256
  embedding {{ tokens = vocab {embed} }}
  decoder(layers) {{
    norm = layernorm; attention = full(heads: heads, kv_heads: 2); ffn = mlp(hidden: 64)
    final_norm = layernorm {position}
  }}
  head = lm(tied: true)
}}
"""
SCHEMES = {
    "learned": ("; position = learned(max_len: context)", ""),
    "rope": ("", "; position = rope"),
    "alibi": ("", "; position = alibi"),
    "t5_bias": ("", "; position = t5_bias(bidirectional: false)"),
}


def model(registry, scheme="rope", layers=2, **kw):
    embed, position = SCHEMES[scheme]
    ir = txdsl.parse(BASE.format(layers=layers, embed=embed, position=position),
                     registry=registry)
    torch.manual_seed(0)
    m = construct(ir, registry=registry, init_std=0.3, **kw)  # large weights: mistakes show
    return m


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@torch.no_grad()
def test_packed_documents_equal_separate_rows(registry, scheme):
    m = model(registry, scheme)
    a, b = torch.randint(0, 50, (1, 5)), torch.randint(0, 50, (1, 4))
    packed = m(torch.cat([a, b], 1), document_ids=torch.tensor([[0] * 5 + [1] * 4])).logits
    torch.testing.assert_close(packed[:, :5], m(a).logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[:, 5:], m(b).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scheme", ["rope", "alibi", "t5_bias"])
@torch.no_grad()
def test_per_row_position_ids_equal_row_by_row(registry, scheme):
    m = model(registry, scheme)
    ids = torch.randint(0, 50, (2, 6))
    pos = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 2, 3, 7, 8, 20]])  # gaps: not a uniform shift
    both = m(ids, position_ids=pos).logits
    for r in range(2):
        one = m(ids[r:r + 1], position_ids=pos[r:r + 1]).logits
        torch.testing.assert_close(both[r:r + 1], one, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(both[1], m(ids[1:]).logits[0], atol=1e-3)  # positions were read


@torch.no_grad()
def test_static_cache_decoding_equals_uncached_for_200_tokens(registry):
    m = model(registry, "rope", layers=2)
    prompt = torch.randint(0, 50, (2, 5))
    mask = torch.tensor([[1] * 5, [0, 0, 1, 1, 1]])  # a left-padded row
    cached = m.generate(prompt, 200, attention_mask=mask)
    uncached = m.generate(prompt, 200, attention_mask=mask, use_cache=False)
    assert cached.shape == (2, 205)
    assert torch.equal(cached, uncached)


@torch.no_grad()
def test_compiled_decode_step_keeps_its_shapes_and_never_recompiles(registry):
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    m = model(registry, "t5_bias", layers=2)
    B, T0, steps = 2, 4, 50
    cache = m.new_cache(B, T0 + steps)
    ids = torch.randint(0, 50, (B, T0))
    out = m(ids, past_key_values=cache, use_cache=True)  # prefill, eager
    shapes = {n: tuple(t.shape) for n, t in vars(cache.stack.self_attention[0]).items()}
    counter = CompileCounterWithBackend("aot_eager")
    step = torch.compile(m, backend=counter, fullgraph=True)
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    eager_cache = m.new_cache(B, T0 + steps)
    m(ids, past_key_values=eager_cache, use_cache=True)
    for t in range(T0, T0 + steps):
        slot = torch.tensor([t])
        got = step(tok, attention_mask=torch.ones(B, 1, dtype=torch.long),
                   past_key_values=cache, cache_position=slot).logits
        want = m(tok, past_key_values=eager_cache, cache_position=slot).logits
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        tok = got[:, -1].argmax(-1, keepdim=True)
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} frames"
    assert {n: tuple(t.shape) for n, t in vars(cache.stack.self_attention[0]).items()} == shapes
    assert cache.get_seq_length() == T0 + steps


@torch.no_grad()
def test_masks_are_lowered_once_per_stack_forward(registry):
    ids = torch.randint(0, 50, (2, 6))
    mask = torch.tensor([[1] * 6, [0, 1, 1, 1, 1, 1]])
    counts = {}
    for layers in (1, 4):
        m = model(registry, "alibi", layers=layers)
        AttentionMask.lowered_total = 0
        m(ids, attention_mask=mask)
        counts[layers] = AttentionMask.lowered_total
    assert counts[1] == counts[4] == 1  # the dense mask, made once, read by every layer
    m = model(registry, "learned", layers=4)  # no bias: sdpa takes the additive form
    AttentionMask.lowered_total = 0
    m(ids, attention_mask=mask)
    assert AttentionMask.lowered_total == 2  # dense, then additive: once each for 4 layers
    AttentionMask.lowered_total = 0
    m(ids, attention_mask=torch.ones_like(mask))  # all ones: SDPA's is_causal, nothing lowered
    assert AttentionMask.lowered_total == 0


@torch.no_grad()
def test_flex_block_mask_path_equals_the_dense_path():
    """FlexAttention, compiled (its only exact form on CPU), with the mask lowered to a
    BlockMask == SDPA with the dense mask, for causal + padding, with a bias (ALiBi)."""
    from txdsl.sdk import BuildContext, Dims, PositionContext
    from txdsl_attention import FlexAttention, FullArgs, SDPAAttention
    from txdsl_positions import AlibiPositions

    args, ctx = FullArgs(heads=4, kv_heads=2), BuildContext(dims=Dims(d_model=32, width=32,
                                                                      embed_size=32))
    torch.manual_seed(0)
    flex, dense = FlexAttention.from_args(args, ctx).eval(), SDPAAttention.from_args(args, ctx)
    dense.load_state_dict(flex.state_dict())
    x = torch.randn(2, 9, 32)
    real = torch.ones(2, 9, dtype=torch.bool)
    real[1, :2] = False
    bias = AlibiPositions(heads=4).bias(torch.arange(9), torch.arange(9))

    def run(m, x, real, bias):
        positions = torch.arange(9)[None]
        return m(x, mask=AttentionMask(causal=True, key_padding=real),
                 position=PositionContext(positions, positions, bias=bias))

    got = torch.compile(run)(flex, x, real, bias)
    torch.testing.assert_close(got[real], run(dense.eval(), x, real, bias)[real],
                               atol=1e-4, rtol=1e-4)
