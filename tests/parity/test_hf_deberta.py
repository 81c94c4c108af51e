"""DeBERTa v2/v3 parity: ``transformers.DebertaV2ForMaskedLM`` with the same weights gives
the same MLM logits and hidden states as ``specs/deberta.tx``'s ``deberta_v3_small_mlm``
shrunk to odd sizes, with padding, with lengths beyond the exact buckets (so the log
buckets are exercised) and not multiples of them: v3 (shared keys, normed relative
embeddings) and v2 (``pos_key_proj``/``pos_query_proj``, no norm)."""

from __future__ import annotations

import pytest
import torch

from parity_helpers import assert_close, check_spec_parses, hf_pair, scale_up

transformers = pytest.importorskip("transformers")

EPS = 1e-7
CONFIGS = {  # name: (vocab, d_model, heads, layers, context, buckets, v3)
    "v3_d40_h5_b8": (67, 40, 5, 2, 40, 8, True),
    "v2_d36_h3_b6": (59, 36, 3, 3, 30, 6, False),
    "v3_d28_h7_b10": (45, 28, 7, 2, 50, 10, True),
}


def tiny(vocab, d, heads, layers, context, buckets, v3) -> str:
    v2 = "" if v3 else ("  encoder {\n    attention.share_att_key = false\n"
                        "    position.norm = false\n  }\n")
    return (f'import "deberta.tx"\nmodel tiny extends deberta_v3_small_mlm {{\n  vocab = {vocab}; '
            f'd_model = {d}; heads = {heads}; layers = {layers}; context = {context}; '
            f'drop = 0.0\n  encoder {{ position.buckets = {buckets} }}\n{v2}}}\n')


def hf_deberta(vocab, d, heads, layers, context, buckets, v3):
    config = transformers.DebertaV2Config(
        vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * d, hidden_act="gelu", max_position_embeddings=context,
        type_vocab_size=0, layer_norm_eps=EPS, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, relative_attention=True, position_buckets=buckets,
        max_relative_positions=-1, norm_rel_ebd="layer_norm" if v3 else "none",
        share_att_key=v3, pos_att_type="p2c|c2p", position_biased_input=False, legacy=True)
    return scale_up(transformers.DebertaV2ForMaskedLM(config), std=0.1).eval()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, registry):
    cfg = CONFIGS[request.param]
    return (cfg, *hf_pair(hf_deberta(*cfg), "deberta.tx", tiny(*cfg), registry))  # interop mapping


def batch(vocab: int, B: int = 3, T: int = 23):
    g = torch.Generator().manual_seed(11)
    x = torch.randint(1, vocab, (B, T), generator=g)
    mask = torch.ones_like(x)
    mask[1, 15:] = 0
    mask[2, 6:] = 0
    return x, mask


@torch.no_grad()
@pytest.mark.parametrize("with_mask", [True, False], ids=["mask", "no_mask"])
def test_mlm_logits_and_hidden_states_match(pair, with_mask):
    cfg, hf, ours = pair
    x, mask = batch(cfg[0])
    given = mask if with_mask else None
    a = ours(x, attention_mask=given, output_hidden_states=True)
    b = hf(x, attention_mask=given, output_hidden_states=True)
    real = mask.bool() if with_mask else torch.ones_like(mask, dtype=torch.bool)
    assert b.logits.abs().max() > 1.0  # large enough for a mistake to show
    assert_close(a.logits[real], b.logits[real], atol=1e-4)
    assert len(a.hidden_states) == len(b.hidden_states)
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        assert_close(ha[real], hb[real], atol=1e-4)


@torch.no_grad()
def test_position_terms_matter(pair):
    """The comparison above could fail: dropping c2p and p2c changes the logits."""
    cfg, hf, ours = pair
    x, _ = batch(cfg[0])
    layers = ours.encoder.layers
    saved = [layer.attention.terms for layer in layers]
    for layer in layers:
        layer.attention.terms = ()
    try:
        content_only = ours(x).logits
    finally:
        for layer, terms in zip(layers, saved):
            layer.attention.terms = terms
    assert (content_only - hf(x).logits).abs().max() > 1e-2


def test_tiny_spec_parses():
    check_spec_parses("deberta.tx", tiny(*CONFIGS["v3_d40_h5_b8"]))
