"""XLNet parity: ``transformers.XLNetLMHeadModel`` with the same weights gives the same logits
(and hidden states, and mems) as ``specs/xlnet.tx`` shrunk to odd sizes: with padding and
segment ids, with ``perm_mask`` alone, with ``perm_mask`` and ``target_mapping`` (the
query stream), and across two segments with ``mems``; the parameter counts are equal
(mask_emb included)."""

from __future__ import annotations

import pytest
import torch

from parity_helpers import assert_close, check_spec_parses, spec_ir, scale_up
from txdsl.back.construct import construct
from txdsl.interop import load_hf_weights

transformers = pytest.importorskip("transformers")

MEM = 9
CONFIGS = {  # name: (vocab, d_model, heads, layers, d_inner)
    "d40_h5_l2": (53, 40, 5, 2, 72),
    "d36_h3_l3": (61, 36, 3, 3, 50),
}


def tiny(vocab, d, heads, layers, d_ff) -> str:
    return (f'import "xlnet.tx"\nmodel tiny extends xlnet {{\n  vocab = {vocab}; d_model = {d}; '
            f'heads = {heads}; layers = {layers}; d_ff = {d_ff}; drop = 0.0\n'
            f'  decoder {{ attention.mem_len = {MEM} }}\n}}\n')


def hf_xlnet(vocab, d, heads, layers, d_ff):
    config = transformers.XLNetConfig(vocab_size=vocab, d_model=d, n_layer=layers, n_head=heads,
                                      d_inner=d_ff, ff_activation="gelu", dropout=0.0,
                                      mem_len=MEM, layer_norm_eps=1e-12)
    return scale_up(transformers.XLNetLMHeadModel(config), std=0.1,
                    norm_names=("layer_norm",)).eval()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, registry):
    cfg = CONFIGS[request.param]
    hf = hf_xlnet(*cfg)
    ours = construct(spec_ir("xlnet.tx", tiny(*cfg)), registry=registry)
    load_hf_weights(ours, hf)  # txdsl.interop's mapping, strictly
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    return cfg, hf, ours.eval()


def batch(vocab: int, B: int = 3, T: int = 13):
    g = torch.Generator().manual_seed(9)
    x = torch.randint(0, vocab, (B, T), generator=g)
    mask = torch.ones_like(x)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    types = torch.zeros_like(x)
    types[:, 7:] = 1
    perm = (torch.rand(B, T, T, generator=g) < 0.4).float()
    P = 4
    mapping = torch.zeros(B, P, T)
    for b in range(B):
        mapping[b, torch.arange(P), torch.randperm(T, generator=g)[:P]] = 1.0
    perm[:, :, mapping.sum(1)[0].bool()] = 1.0  # targets are hidden from everyone (pre-training)
    return x, mask, types, perm, mapping


@torch.no_grad()
def test_logits_and_hidden_states_with_padding_and_segments(pair):
    cfg, hf, ours = pair
    x, mask, types, _, _ = batch(cfg[0])
    a = ours(x, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    b = hf(x, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    real = mask.bool()
    assert b.logits.abs().max() > 1.0
    assert_close(a.logits[real], b.logits[real], atol=1e-4)
    assert len(a.hidden_states) == len(b.hidden_states)
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        assert_close(ha[real], hb[real], atol=1e-4)


@torch.no_grad()
def test_logits_with_perm_mask(pair):
    cfg, hf, ours = pair
    x, mask, types, perm, _ = batch(cfg[0])
    a = ours(x, attention_mask=mask, token_type_ids=types, perm_mask=perm).logits
    b = hf(x, attention_mask=mask, token_type_ids=types, perm_mask=perm).logits
    real = mask.bool()
    assert_close(a[real], b[real], atol=1e-4)
    assert (a - ours(x, attention_mask=mask, token_type_ids=types).logits).abs().max() > 1e-2


@torch.no_grad()
def test_query_stream_logits_with_target_mapping(pair):
    cfg, hf, ours = pair
    x, _, types, perm, mapping = batch(cfg[0])
    a = ours(x, token_type_ids=types, perm_mask=perm, target_mapping=mapping).logits
    b = hf(x, token_type_ids=types, perm_mask=perm, target_mapping=mapping).logits
    assert a.shape == b.shape == (x.shape[0], mapping.shape[1], cfg[0])
    assert_close(a, b, atol=1e-4)


@torch.no_grad()
def test_two_segments_with_mems(pair):
    cfg, hf, ours = pair
    x, _, types, _, _ = batch(cfg[0], T=20)
    first, second = x[:, :12], x[:, 12:]
    a1, b1 = ours(first), hf(first, use_mems=True)
    assert_close(a1.logits, b1.logits, atol=1e-4)
    assert len(a1.mems) == len(b1.mems)
    for ma, mb in zip(a1.mems, b1.mems):
        assert_close(ma, mb.transpose(0, 1), atol=1e-4)  # HF keeps (M, B, d)
    a2 = ours(second, mems=a1.mems, token_type_ids=types[:, 12:])
    b2 = hf(second, mems=b1.mems, token_type_ids=types[:, 12:], use_mems=True)
    assert_close(a2.logits, b2.logits, atol=1e-4)
    for ma, mb in zip(a2.mems, b2.mems):
        assert_close(ma, mb.transpose(0, 1), atol=1e-4)


def test_tiny_spec_parses():
    check_spec_parses("xlnet.tx", tiny(*CONFIGS["d40_h5_l2"]))
