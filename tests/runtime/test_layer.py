"""Layers against the residual formulas, with attention written out naively."""

from __future__ import annotations

import pytest
import torch

from ir_helpers import decoder_only, encoder_decoder, full
from txdsl.back.construct import construct
from txdsl.sdk.attention import AttentionMask


def naive_attention(attn, x, memory=None, causal=False, key_padding=None):
    """softmax(q k^T / sqrt(hd) + mask) v, per head, from the module's own projections."""
    src = x if memory is None else memory
    B, T, _ = x.shape
    S = src.shape[1]
    H, hd = attn.heads, attn.head_dim
    q = attn.q_proj(x).view(B, T, H, hd).transpose(1, 2)
    k = attn.k_proj(src).view(B, S, H, hd).transpose(1, 2)
    v = attn.v_proj(src).view(B, S, H, hd).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / hd ** 0.5  # (B, H, T, S)
    allowed = torch.ones(B, 1, T, S, dtype=torch.bool)
    if causal:
        allowed = allowed & torch.ones(T, S, dtype=torch.bool).tril(S - T)
    if key_padding is not None:
        allowed = allowed & key_padding.bool()[:, None, None, :]
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * hd)
    return attn.out_proj(y)


def _layer(registry, **kw):
    model = construct(decoder_only(d_model=16, heads=2, n_layers=1, **kw), registry=registry,
                      force={"attention": "reference"})
    return model.decoder.layers[0]


X = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
CAUSAL = AttentionMask(causal=True)


@torch.no_grad()
def test_pre_norm(registry):
    L = _layer(registry, residual="pre")
    h = X + naive_attention(L.attention, L.attention_norm(X), causal=True)
    expected = h + L.ffn(L.ffn_norm(h))
    torch.testing.assert_close(L(X, mask=CAUSAL), expected)


@torch.no_grad()
def test_post_norm(registry):
    L = _layer(registry, residual="post")
    h = L.attention_norm(X + naive_attention(L.attention, X, causal=True))
    expected = L.ffn_norm(h + L.ffn(h))
    torch.testing.assert_close(L(X, mask=CAUSAL), expected)


@torch.no_grad()
def test_sandwich_norm(registry):
    L = _layer(registry, residual="sandwich")
    with torch.no_grad():  # make the out-norms differ from the in-norms
        for p in (L.attention_norm_out.weight, L.ffn_norm_out.weight):
            p.uniform_(0.5, 1.5)
    h = X + L.attention_norm_out(naive_attention(L.attention, L.attention_norm(X), causal=True))
    expected = h + L.ffn_norm_out(L.ffn(L.ffn_norm(h)))
    torch.testing.assert_close(L(X, mask=CAUSAL), expected)
    norms = {n for n, _ in L.named_children() if "norm" in n}
    assert norms == {"attention_norm", "attention_norm_out", "ffn_norm", "ffn_norm_out"}
    assert L.attention_norm is not L.attention_norm_out


@torch.no_grad()
def test_attention_only_layer_and_no_norm(registry):
    from txdsl.ir import LayerIR

    ir = decoder_only(d_model=16, heads=2, n_layers=1)
    layer = LayerIR(index=0, residual="pre", norm=None, attention=full(2), ffn=None)
    ir = ir.model_copy(update={"decoder": ir.decoder.model_copy(update={"layers": (layer,)})})
    L = construct(ir, registry=registry, force={"attention": "reference"}).decoder.layers[0]
    assert L.ffn is None and L.attention_norm is None
    torch.testing.assert_close(L(X, mask=CAUSAL), X + naive_attention(L.attention, X, causal=True))


@torch.no_grad()
def test_key_padding_reaches_attention(registry):
    L = _layer(registry, residual="pre")
    pad = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    h = X + naive_attention(L.attention, L.attention_norm(X), causal=True, key_padding=pad)
    expected = h + L.ffn(L.ffn_norm(h))
    out = L(X, mask=AttentionMask(causal=True, key_padding=pad.bool()))
    torch.testing.assert_close(out, expected)


@torch.no_grad()
def test_cross_attention_post_norm(registry):
    model = construct(encoder_decoder(d_model=16, heads=2), registry=registry,
                      force={"attention": "reference"})
    L = model.decoder.layers[0]
    memory = torch.randn(2, 7, 16)
    mem_pad = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]])
    h = L.attention_norm(X + naive_attention(L.attention, X, causal=True))
    h = L.cross_attention_norm(h + naive_attention(L.cross_attention, h, memory=memory,
                                                    key_padding=mem_pad))
    expected = L.ffn_norm(h + L.ffn(h))
    out = L(X, mask=CAUSAL, memory=memory, memory_mask=AttentionMask(key_padding=mem_pad.bool()))
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="memory"):
        L(X, mask=CAUSAL)


def test_dropout_on_sublayer_outputs(registry):
    L = _layer(registry, residual="pre", dropout=0.5)
    L.train()
    torch.manual_seed(0)
    a = L(X, mask=CAUSAL)
    L.eval()
    b = L(X, mask=CAUSAL)
    assert not torch.allclose(a, b)
    with torch.no_grad():
        h = X + naive_attention(L.attention, L.attention_norm(X), causal=True)
        torch.testing.assert_close(b, h + L.ffn(L.ffn_norm(h)))


def test_unknown_residual_is_refused():
    from txdsl.runtime import Layer

    with pytest.raises(ValueError, match="residual"):
        Layer(residual="middle", attention=torch.nn.Identity())  # type: ignore[arg-type]
