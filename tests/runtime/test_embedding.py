"""The input embedding against its defining formula, part by part."""

from __future__ import annotations

import math

import torch

from ir_helpers import comp, layernorm
from txdsl.back.construct import construct
from txdsl.ir import EmbeddingIR, HeadIR, LayerIR, ModelIR, StackIR
from txdsl.runtime import Embedding


def encoder_model(embedding: EmbeddingIR, d_model: int = 16, registry=None, heads=()):
    layer = LayerIR(index=0, residual="pre", norm=layernorm(),
                    attention=comp("attention", "full", heads=2),
                    ffn=comp("ffn", "mlp", hidden=32))
    ir = ModelIR(name="m", d_model=d_model, embedding=embedding,
                 encoder=StackIR(role="encoder", causal=False, layers=(layer,)), heads=heads)
    return construct(ir, registry=registry)


def test_tokens_positions_token_types_norm(registry):
    emb = EmbeddingIR(tokens=30, size=16, token_types=2, norm=layernorm(1e-12),
                      position=comp("position", "learned", max_len=20))
    m = encoder_model(emb, registry=registry).embedding
    x = torch.randint(0, 30, (2, 7))
    types = torch.randint(0, 2, (2, 7))
    expected = m.tokens(x) + m.position.embed.weight[:7] + m.token_types(types)
    expected = torch.nn.functional.layer_norm(expected, (16,), m.norm.weight, m.norm.bias, 1e-12)
    torch.testing.assert_close(m(x, token_type_ids=types), expected)
    # no token_type_ids: segment 0
    expected0 = m.norm(m.tokens(x) + m.position.embed.weight[:7] + m.token_types.weight[0])
    torch.testing.assert_close(m(x), expected0)
    # positions continue after cached ones
    shifted = m.norm(m.tokens(x) + m.position.embed.weight[3:10] + m.token_types.weight[0])
    torch.testing.assert_close(m(x, past_length=3), shifted)


def test_scale_and_sinusoidal(registry):
    emb = EmbeddingIR(tokens=30, size=16, scale=True, position=comp("position", "sinusoidal"))
    m = encoder_model(emb, registry=registry).embedding
    x = torch.randint(0, 30, (1, 5))
    pos = torch.arange(5, dtype=torch.float32)[:, None]
    i = torch.arange(0, 16, 2, dtype=torch.float32)
    angles = pos / 10000 ** (i / 16)
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # sin even, cos odd
    torch.testing.assert_close(m(x), m.tokens(x) * math.sqrt(16) + pe)


def test_factorized_embedding_projects_after_norm(registry):
    """ALBERT/ELECTRA: norm and dropout at width E, then Linear(E, d_model)."""
    emb = EmbeddingIR(tokens=30, size=8, norm=layernorm(),
                      position=comp("position", "learned", max_len=20))
    m = encoder_model(emb, d_model=16, registry=registry).embedding
    assert m.projection.in_features == 8 and m.projection.out_features == 16
    assert m.norm.weight.shape == (8,)
    x = torch.randint(0, 30, (2, 4))
    expected = m.projection(m.norm(m.tokens(x) + m.position.embed.weight[:4]))
    torch.testing.assert_close(m(x), expected)


def test_roberta_positions_skip_padding(registry):
    """padding_idx 1: real tokens count from 2, padding sits at 1 (HF create_position_ids:
    padding is where the token id is padding_idx)."""
    emb = EmbeddingIR(tokens=30, size=16,
                      position=comp("position", "learned", max_len=24, padding_idx=1))
    m = encoder_model(emb, registry=registry).embedding
    x = torch.randint(2, 30, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    x[1, 3:] = 1  # the padding tokens
    torch.testing.assert_close(m(x), m(x, attention_mask=mask))  # the mask isn't needed
    ids = torch.tensor([[2, 3, 4, 5, 6], [2, 3, 4, 1, 1]])
    torch.testing.assert_close(m(x, attention_mask=mask), m.tokens(x) + m.position.embed(ids))
    # explicit position ids win
    torch.testing.assert_close(m(x, position_ids=ids[:1]), m.tokens(x) + m.position.embed(ids[:1]))


def test_vit_patches_cls_then_positions(registry):
    emb = EmbeddingIR(size=16, cls_token=True,
                      patches=comp("patches", "conv", size=4, channels=3, image=8),
                      position=comp("position", "learned", max_len=5))
    model = encoder_model(emb, registry=registry,
                          heads=(HeadIR(name="cls", head=comp("head", "classifier", classes=3)),))
    m = model.embedding
    pixels = torch.randn(2, 3, 8, 8)
    patches = m.patches.projection(pixels).flatten(2).transpose(1, 2)  # (2, 4, 16)
    cls = m.cls_token.expand(2, 1, 16)
    expected = torch.cat([cls, patches], dim=1) + m.position.embed.weight
    torch.testing.assert_close(m(pixel_values=pixels), expected)
    out = model(pixel_values=pixels)
    assert out.last_hidden_state.shape == (2, 5, 16)
    assert out.logits.shape == (2, 3)


def test_embedding_requires_an_input():
    import pytest

    with pytest.raises(ValueError, match="token ids"):
        Embedding(size=4, d_model=4)
