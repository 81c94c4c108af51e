"""BERT parity: ``transformers.BertForMaskedLM`` with the same weights gives the same
MLM logits, with padding and token types."""

from __future__ import annotations

import pytest
import torch

from parity_helpers import assert_close, check_spec_parses, comp, parse_spec
from txdsl.back.construct import construct
from txdsl.interop import load_hf_weights
from txdsl.ir import EmbeddingIR, HeadIR, LayerIR, ModelIR, StackIR

transformers = pytest.importorskip("transformers")

VOCAB, D, HEADS, LAYERS, CONTEXT, EPS = 100, 64, 4, 2, 32, 1e-12

TINY = f"""import "bert.tx"
model tiny extends bert_mlm {{
  vocab = {VOCAB}; d_model = {D}; heads = {HEADS}; layers = {LAYERS}; context = {CONTEXT}
}}
"""


def bert_ir() -> ModelIR:
    """A tiny BERT with an MLM head: from ``specs/bert.tx`` when it parses, else by hand."""
    ir = parse_spec("bert.tx", TINY)
    if ir is not None:
        return ir
    norm = comp("norm", "layernorm", eps=EPS)
    layer = dict(residual="post", norm=norm, attention=comp("attention", "full", heads=HEADS),
                 ffn=comp("ffn", "mlp", hidden=4 * D, act="gelu"))
    return ModelIR(
        name="tiny", d_model=D, params={"vocab": VOCAB, "context": CONTEXT},
        embedding=EmbeddingIR(tokens=VOCAB, size=D, token_types=2, norm=norm,
                              position=comp("position", "learned", max_len=CONTEXT)),
        encoder=StackIR(role="encoder", causal=False,
                        layers=tuple(LayerIR(index=i, **layer) for i in range(LAYERS))),
        heads=(HeadIR(name="mlm", head=comp("head", "mlm", tied=True, act="gelu", eps=EPS)),),
    )


def hf_bert() -> "transformers.BertForMaskedLM":
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=4 * D, hidden_act="gelu", max_position_embeddings=CONTEXT,
        type_vocab_size=2, layer_norm_eps=EPS, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, tie_word_embeddings=True)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module", params=["reference", "sdpa"])
def pair(request, registry):
    hf = hf_bert()
    ours = construct(bert_ir(), registry=registry, force={"attention": request.param})
    load_hf_weights(ours, hf)  # txdsl.interop's BERT mapping, strictly
    assert ours.embedding.tokens.weight is ours.heads.mlm.decoder.weight
    return hf, ours.eval()


def batch(B: int = 3, T: int = 14):
    g = torch.Generator().manual_seed(5)
    x = torch.randint(1, VOCAB, (B, T), generator=g)
    types = torch.zeros_like(x)
    types[:, T // 2:] = 1
    mask = torch.ones_like(x)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    return x, types, mask


@torch.no_grad()
def test_mlm_logits_match(pair):
    hf, ours = pair
    x, types, _ = batch()
    assert_close(ours(x, token_type_ids=types).logits,
                 hf(x, token_type_ids=types).logits, atol=1e-4)


@torch.no_grad()
def test_mlm_logits_with_padding_and_token_types(pair):
    hf, ours = pair
    x, types, mask = batch()
    a = ours(x, attention_mask=mask, token_type_ids=types)
    b = hf(x, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    real = mask.bool()
    assert_close(a.logits[real], b.logits[real], atol=1e-4)
    assert_close(a.last_hidden_state[real], b.hidden_states[-1][real], atol=1e-4)


@torch.no_grad()
def test_padding_does_not_leak(pair):
    _, ours = pair
    x, types, mask = batch()
    a = ours(x, attention_mask=mask, token_type_ids=types).logits
    alone = ours(x[2:3, :4], token_type_ids=types[2:3, :4]).logits
    assert_close(a[2, :4], alone[0], atol=1e-4)


def test_tiny_spec_parses():
    """specs/bert.tx with the tiny overrides parses (the tests above then use it)."""
    check_spec_parses("bert.tx", TINY)
