"""RoBERTa parity: ``transformers.RobertaModel`` with the same weights gives the same hidden
states and pooler output as ``specs/roberta.tx`` shrunk to odd sizes, with a padding mask
and also when a right-padded batch comes without one: both take positions from
``input_ids != padding_idx`` (HF ``create_position_ids_from_input_ids``)."""

from __future__ import annotations

import pytest
import torch

from parity_helpers import (assert_close, bert_encoder_weights, check_spec_parses, detached,
                            hf_pair, scale_up)

transformers = pytest.importorskip("transformers")

PAD = 1
CONFIGS = {  # name: (vocab, d_model, heads, layers, context)
    "d36_h3_l2": (71, 36, 3, 2, 30),
    "d40_h5_l3": (57, 40, 5, 3, 21),
}


def tiny(vocab: int, d: int, heads: int, layers: int, context: int) -> str:
    return (f'import "roberta.tx"\nmodel tiny extends roberta {{\n  vocab = {vocab}; '
            f'd_model = {d}; heads = {heads}; layers = {layers}; context = {context}; '
            f'drop = 0.0\n}}\n')


def hf_roberta(vocab: int, d: int, heads: int, layers: int, context: int):
    config = transformers.RobertaConfig(
        vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * d, max_position_embeddings=context + PAD + 1, type_vocab_size=1,
        pad_token_id=PAD, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)
    config._attn_implementation = "eager"
    model = scale_up(transformers.RobertaModel(config), std=0.1)
    with torch.no_grad():  # HF keeps the padding rows zero (nn.Embedding(padding_idx))
        model.embeddings.word_embeddings.weight[PAD].zero_()
        model.embeddings.position_embeddings.weight[PAD].zero_()
    return model.eval()


def roberta_state_dict(hf) -> dict[str, torch.Tensor]:
    sd = bert_encoder_weights(hf)
    sd["heads.pooler.dense.weight"] = hf.pooler.dense.weight
    sd["heads.pooler.dense.bias"] = hf.pooler.dense.bias
    return detached(sd)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, registry):
    cfg = CONFIGS[request.param]
    return (cfg, *hf_pair(hf_roberta(*cfg), "roberta.tx", tiny(*cfg), registry,
                          roberta_state_dict))


def batch(vocab: int, B: int = 3, T: int = 17):
    g = torch.Generator().manual_seed(7)
    x = torch.randint(PAD + 1, vocab, (B, T), generator=g)
    mask = torch.ones_like(x)
    mask[1, 11:] = 0
    mask[2, 5:] = 0
    return x.masked_fill(mask == 0, PAD), mask  # right padding with the padding token


@torch.no_grad()
@pytest.mark.parametrize("with_mask", [True, False], ids=["mask", "no_mask"])
def test_hidden_states_and_pooler_match(pair, with_mask):
    cfg, hf, ours = pair
    x, mask = batch(cfg[0])
    given = mask if with_mask else None
    a = ours(x, attention_mask=given, output_hidden_states=True)
    b = hf(x, attention_mask=given, output_hidden_states=True)
    real = mask.bool()
    assert len(a.hidden_states) == len(b.hidden_states)
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        assert_close(ha[real], hb[real], atol=1e-4)
    assert_close(a.heads["pooler"], b.pooler_output, atol=1e-4)


@torch.no_grad()
def test_positions_come_from_the_ids_not_the_mask(pair):
    """Without a mask, a padded row's real tokens still get HF's positions, so its output
    on them equals the unpadded row's alone; the check above could fail if positions
    were 2.. over every slot (row 2's first token would be unaffected, later ones not)."""
    cfg, _, ours = pair
    x, _ = batch(cfg[0])
    embedded = ours.embedding(x)
    alone = ours.embedding(x[2:3, :5])
    assert_close(embedded[2, :5], alone[0], atol=1e-6)
    ids = ours.embedding.position_ids(None, x.shape[1], 0, x.device, input_ids=x)
    assert ids[2].tolist() == [2, 3, 4, 5, 6] + [PAD] * (x.shape[1] - 5)


def test_tiny_spec_parses():
    check_spec_parses("roberta.tx", tiny(*CONFIGS["d36_h3_l2"]))
