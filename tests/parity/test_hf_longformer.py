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

from parity_helpers import (BERT_QKV, assert_close, bert_encoder_weights, check_spec_parses,
                            detached, hf_pair, scale_up)

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
    # scaled up from 0.02 (mistakes show), drawing on from the seed above
    return scale_up(transformers.LongformerModel(config), std=0.15, seed=None).eval()


GLOBAL_QKV = (("q_global", "query_global"), ("k_global", "key_global"),
              ("v_global", "value_global"))


def state_dict(hf) -> dict[str, torch.Tensor]:
    sd = bert_encoder_weights(hf, BERT_QKV + GLOBAL_QKV)
    sd["heads.pooler.dense.weight"] = hf.pooler.dense.weight
    sd["heads.pooler.dense.bias"] = hf.pooler.dense.bias
    return detached(sd)


@pytest.fixture(scope="module", params=["blocked", "sdpa"])  # reference == both: test_sparse_impls
def pair(request, registry):
    return hf_pair(hf_longformer(), "longformer.tx", TINY, registry, state_dict,
                   force={"attention": request.param})


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
