"""Persistent memory (Sukhbaatar et al. 2019): the attention against its equation written
naively (causal and padding masks), memory 0 == full attention, decoding == the full forward,
aot_eager fullgraph, the all-attention spec and the copy-task training bar."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from copy_task import assert_trains, copy_spec, full_baseline, train
from txdsl.sdk.attention import AttentionMask

SPEC = """
model pm_tiny {
  vocab = 40; d_model = 32; heads = 4
  embedding { tokens = vocab }
  decoder(2) { norm = layernorm; position = rope
               attention = persistent(heads: heads, kv_heads: 2, memory: 5); ffn = none }
  head = lm
}
"""


@pytest.fixture(scope="module")
def model():
    return txdsl.build(SPEC, backend="eager", seed=0).module.eval()


def naive(attn, x, causal, key_padding):
    """softmax over [sequence keys (masked); memory keys (always visible)], per head."""
    B, T, _ = x.shape
    H, hd, N = attn.heads, attn.head_dim, attn.memory_keys.shape[1]
    g = attn.heads // attn.kv_heads
    q = attn.q_proj(x).view(B, T, H, hd).transpose(1, 2)
    k = attn.k_proj(x).view(B, T, -1, hd).transpose(1, 2).repeat_interleave(g, 1)
    v = attn.v_proj(x).view(B, T, -1, hd).transpose(1, 2).repeat_interleave(g, 1)
    mk = attn.memory_keys.repeat_interleave(g, 0)[None].expand(B, -1, -1, -1)
    mv = attn.memory_values.repeat_interleave(g, 0)[None].expand(B, -1, -1, -1)
    scores = torch.cat([q @ k.transpose(-1, -2), q @ mk.transpose(-1, -2)], -1) / hd ** 0.5
    allowed = torch.ones(B, 1, T, T + N, dtype=torch.bool)
    if causal:
        allowed[..., :T] &= torch.ones(T, T, dtype=torch.bool).tril()
    allowed[..., :T] &= key_padding.bool()[:, None, None, :]
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    y = scores.softmax(-1) @ torch.cat([v, mv], 2)
    return attn.out_proj(y.transpose(1, 2).reshape(B, T, -1))


@pytest.mark.parametrize("causal", [True, False])
def test_the_equation_with_masks(model, causal):
    attn = model.decoder.layers[0].attention
    x = torch.randn(2, 6, 32)
    padding = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    mask = AttentionMask(causal=causal, key_padding=padding.bool())
    with torch.no_grad():
        torch.testing.assert_close(attn(x, mask=mask), naive(attn, x, causal, padding),
                                   atol=1e-5, rtol=1e-5)


def test_memory_zero_is_full_attention():
    zero = txdsl.build(SPEC.replace("memory: 5", "memory: 0"),
                       backend="eager", seed=0).module.eval()
    full = txdsl.build(SPEC.replace("persistent(heads: heads, kv_heads: 2, memory: 5)",
                                    "full(heads: heads, kv_heads: 2)"),
                       backend="eager", seed=0).module.eval()
    missing = full.load_state_dict(zero.state_dict(), strict=False)
    assert all("memory_" in k for k in missing.unexpected_keys) and not missing.missing_keys
    ids = torch.randint(0, 40, (2, 9))
    torch.testing.assert_close(zero(input_ids=ids).logits, full(input_ids=ids).logits,
                               atol=1e-5, rtol=1e-5)


def test_decoding_equals_the_full_forward_and_compiles(model):
    ids = torch.randint(0, 40, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    full = model(input_ids=ids, attention_mask=mask).logits
    cache = model.new_cache(batch=2, capacity=8)
    steps = [model(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                   past_key_values=cache, use_cache=True).logits for t in range(8)]
    decoded = torch.cat(steps, 1)
    torch.testing.assert_close(decoded[0], full[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decoded[1, 3:], full[1, 3:], atol=1e-5, rtol=1e-5)
    compiled = torch.compile(model.train(), backend="aot_eager", fullgraph=True)
    compiled(input_ids=ids).logits.square().mean().backward()
    assert model.decoder.layers[0].attention.memory_values.grad.abs().sum() > 0
    model.eval()


def test_the_all_attention_spec_has_no_ffn():
    ir = txdsl.parse_file(Path(__file__).resolve().parents[2] / "specs" / "all_attention.tx")
    assert all(layer.ffn is None and layer.attention.kind == "persistent"
               for layer in ir.decoder.layers)


def test_trains_on_the_copy_task():
    spec = copy_spec("persistent(heads: heads, memory: 16)", name="pm").replace(
        "ffn = mlp(hidden: 2 * d_model, act: gelu)", "ffn = none")
    variant = train(txdsl.build(spec, backend="eager", seed=0).module)
    full = full_baseline(copy_spec("full(heads: heads)", name="full"))
    print(f"persistent memory copy task: {variant}, full: {full}")
    assert_trains(variant, full)
