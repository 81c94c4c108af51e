"""Longformer parity: ``transformers.LongformerModel`` with the same (scaled-up) weights
gives the same hidden states, without and with global tokens (``global_attention_mask``),
with a different window per layer and with padding; the parameter counts are equal.

Window: HF's ``attention_window`` w (even) counts both sides; ``window: w / 2 + 1`` here
(keys on one side, the query included). HF pads the sequence to a multiple of the
largest window with masked pad tokens; we don't need to (same result on real tokens).
"""

from __future__ import annotations

import pytest
import torch

from parity_helpers import assert_close, check_spec_parses, parse_spec
from txdsl.back.construct import construct

transformers = pytest.importorskip("transformers")

VOCAB, D, HEADS, LAYERS, CONTEXT = 100, 64, 4, 2, 62
HF_WINDOWS = [8, 4]  # per layer, both sides
TINY = f"""import "longformer.tx"
model tiny extends longformer {{
  vocab = {VOCAB}; d_model = {D}; heads = {HEADS}; layers = {LAYERS}; context = {CONTEXT}
  window = {HF_WINDOWS[0] // 2 + 1}
  encoder {{ layer[1] {{ attention = longformer(heads: heads, window: {HF_WINDOWS[1] // 2 + 1}) }} }}
}}
"""


def hf_longformer():
    config = transformers.LongformerConfig(
        vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=4 * D, max_position_embeddings=CONTEXT + 2, type_vocab_size=1,
        attention_window=HF_WINDOWS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=1, layer_norm_eps=1e-5)
    torch.manual_seed(0)
    model = transformers.LongformerModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.15)  # scaled up from 0.02: mistakes show
    return model.eval()


def state_dict(hf) -> dict[str, torch.Tensor]:
    sd, e = {}, hf.embeddings
    sd["embedding.tokens.weight"] = e.word_embeddings.weight
    sd["embedding.position.embed.weight"] = e.position_embeddings.weight
    sd["embedding.token_types.weight"] = e.token_type_embeddings.weight
    sd["embedding.norm.weight"], sd["embedding.norm.bias"] = e.LayerNorm.weight, e.LayerNorm.bias
    for i, layer in enumerate(hf.encoder.layer):
        p, att = f"encoder.layers.{i}.", layer.attention
        for ours, theirs in (("q_proj", att.self.query), ("k_proj", att.self.key),
                             ("v_proj", att.self.value), ("q_global", att.self.query_global),
                             ("k_global", att.self.key_global),
                             ("v_global", att.self.value_global),
                             ("out_proj", att.output.dense)):
            sd[p + f"attention.{ours}.weight"] = theirs.weight
            sd[p + f"attention.{ours}.bias"] = theirs.bias
        sd[p + "attention_norm.weight"] = att.output.LayerNorm.weight
        sd[p + "attention_norm.bias"] = att.output.LayerNorm.bias
        sd[p + "ffn.up.weight"] = layer.intermediate.dense.weight
        sd[p + "ffn.up.bias"] = layer.intermediate.dense.bias
        sd[p + "ffn.down.weight"] = layer.output.dense.weight
        sd[p + "ffn.down.bias"] = layer.output.dense.bias
        sd[p + "ffn_norm.weight"] = layer.output.LayerNorm.weight
        sd[p + "ffn_norm.bias"] = layer.output.LayerNorm.bias
    sd["heads.pooler.dense.weight"] = hf.pooler.dense.weight
    sd["heads.pooler.dense.bias"] = hf.pooler.dense.bias
    return {k: v.detach().clone() for k, v in sd.items()}


@pytest.fixture(scope="module", params=["blocked", "sdpa"])  # reference == both: test_sparse_impls
def pair(request, registry):
    hf = hf_longformer()
    ours = construct(parse_spec("longformer.tx", TINY), registry=registry,
                     force={"attention": request.param})
    ours.load_state_dict(state_dict(hf), strict=True)
    return hf, ours.eval()


def inputs(B: int = 2, T: int = 30):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(2, VOCAB, (B, T), generator=g)  # 1 is the pad id
    mask = torch.ones_like(ids)
    mask[1, 22:] = 0
    ids[1, 22:] = 1
    glob = torch.zeros_like(ids)
    glob[:, 0] = 1  # [CLS]-like
    glob[0, 13] = 1
    return ids, mask, glob


def test_parameter_counts_equal(pair):
    hf, ours = pair
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


@torch.no_grad()
def test_hidden_states_without_global_tokens(pair):
    hf, ours = pair
    ids, mask, _ = inputs()
    a = ours(ids, attention_mask=mask).last_hidden_state
    b = hf(ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert_close(a[real], b[real], atol=1e-4)


@torch.no_grad()
def test_hidden_states_with_global_tokens(pair):
    hf, ours = pair
    ids, mask, glob = inputs()
    a = ours(ids, attention_mask=mask, global_attention_mask=glob).last_hidden_state
    b = hf(ids, attention_mask=mask, global_attention_mask=glob).last_hidden_state
    real = mask.bool()
    assert_close(a[real], b[real], atol=1e-4)
    plain = ours(ids, attention_mask=mask).last_hidden_state
    assert (plain - a)[real].abs().max() > 1e-2  # the global tokens changed something


def test_tiny_spec_parses():
    check_spec_parses("longformer.tx", TINY)
