"""T5 v1.0 parity: ``transformers.T5ForConditionalGeneration`` with the same weights gives
the same logits, hidden states and loss as ``specs/t5.tx``'s ``t5_small`` shrunk to odd
sizes, with padding masks on both sides. v1.0 rescales the decoder output by
``d_model ** -0.5`` before its tied head (``lm(scale: ...)``; HF ``scale_decoder_outputs``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from parity_helpers import assert_close, check_spec_parses, detached, hf_pair, scale_up

transformers = pytest.importorskip("transformers")

CONFIGS = {  # name: (vocab, d_model, heads, layers, d_ff)
    "d40_h5_l2": (53, 40, 5, 2, 72),
    "d36_h3_l3": (61, 36, 3, 3, 50),
}


def tiny(vocab: int, d: int, heads: int, layers: int, d_ff: int) -> str:
    return (f'import "t5.tx"\nmodel tiny extends t5_small {{\n  vocab = {vocab}; d_model = {d}; '
            f'heads = {heads}; layers = {layers}; d_ff = {d_ff}; drop = 0.0\n}}\n')


def hf_t5(vocab: int, d: int, heads: int, layers: int, d_ff: int):
    config = transformers.T5Config(vocab_size=vocab, d_model=d, d_kv=d // heads, d_ff=d_ff,
                                   num_layers=layers, num_heads=heads, dropout_rate=0.0,
                                   feed_forward_proj="relu")
    assert config.scale_decoder_outputs and config.tie_word_embeddings  # v1.0
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return scale_up(transformers.T5ForConditionalGeneration(config), std=0.15,
                    norm_names=("layer_norm",)).eval()


def t5_state_dict(hf) -> dict[str, torch.Tensor]:
    sd = {"embedding.tokens.weight": hf.shared.weight, "heads.lm.weight": hf.shared.weight}
    for role in ("encoder", "decoder"):
        stack = getattr(hf, role)
        sd[f"{role}.final_norm.weight"] = stack.final_layer_norm.weight
        sd[f"{role}.position.relative_attention_bias.weight"] = (
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight)
        for i, block in enumerate(stack.block):
            p = f"{role}.layers.{i}."
            subs = [("attention", block.layer[0].SelfAttention, block.layer[0].layer_norm)]
            if role == "decoder":
                subs.append(("cross_attention", block.layer[1].EncDecAttention,
                             block.layer[1].layer_norm))
            for name, att, norm in subs:
                sd[p + f"{name}_norm.weight"] = norm.weight
                for ours, theirs in (("q_proj", att.q), ("k_proj", att.k), ("v_proj", att.v),
                                     ("out_proj", att.o)):
                    sd[p + f"{name}.{ours}.weight"] = theirs.weight
            ff = block.layer[-1]
            sd[p + "ffn_norm.weight"] = ff.layer_norm.weight
            sd[p + "ffn.up.weight"] = ff.DenseReluDense.wi.weight
            sd[p + "ffn.down.weight"] = ff.DenseReluDense.wo.weight
    return detached(sd)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, registry):
    cfg = CONFIGS[request.param]
    return (cfg, *hf_pair(hf_t5(*cfg), "t5.tx", tiny(*cfg), registry, t5_state_dict))


def batch(vocab: int, B: int = 3, S: int = 13, T: int = 11):
    g = torch.Generator().manual_seed(3)
    src = torch.randint(1, vocab, (B, S), generator=g)
    tgt = torch.randint(1, vocab, (B, T), generator=g)
    src_mask, tgt_mask = torch.ones_like(src), torch.ones_like(tgt)
    src_mask[1, 8:] = 0
    src_mask[2, 3:] = 0
    tgt_mask[2, 6:] = 0
    return src, src_mask, tgt, tgt_mask


@torch.no_grad()
def test_logits_hidden_states_and_loss_match(pair):
    cfg, hf, ours = pair
    src, src_mask, tgt, tgt_mask = batch(cfg[0])
    a = ours(src, attention_mask=src_mask, decoder_input_ids=tgt,
             decoder_attention_mask=tgt_mask, output_hidden_states=True)
    labels = torch.roll(tgt, -1, dims=1).masked_fill(tgt_mask == 0, -100)
    b = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt,
           decoder_attention_mask=tgt_mask, labels=labels, output_hidden_states=True)
    real, src_real = tgt_mask.bool(), src_mask.bool()
    assert b.logits.abs().max() > 0.25  # large enough for a mistake to show
    assert_close(a.logits[real], b.logits[real], atol=1e-4)
    assert_close(a.encoder_last_hidden_state[src_real], b.encoder_last_hidden_state[src_real],
                 atol=1e-4)
    assert_close(a.last_hidden_state[real], b.decoder_hidden_states[-1][real], atol=1e-4)
    loss = F.cross_entropy(a.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert_close(loss, b.loss, atol=1e-5)


@torch.no_grad()
def test_unscaled_head_would_be_sqrt_d_model_too_large(pair):
    """The check above could fail: without the v1.0 scale the logits are sqrt(d_model) larger."""
    cfg, hf, ours = pair
    assert ours.heads.lm.scale == pytest.approx(cfg[1] ** -0.5)
    src, src_mask, tgt, _ = batch(cfg[0])
    b = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt).logits
    ours.heads.lm.scale = 1.0
    try:
        a = ours(src, attention_mask=src_mask, decoder_input_ids=tgt).logits
    finally:
        ours.heads.lm.scale = cfg[1] ** -0.5
    assert_close(a, b * cfg[1] ** 0.5, atol=1e-3)


def test_tiny_spec_parses():
    check_spec_parses("t5.tx", tiny(*CONFIGS["d40_h5_l2"]))
