"""Tiny Hugging Face models for the interop tests: built from their config classes (no
downloads), dropout off, weights scaled up so a wrong mapping shows in the logits."""

from __future__ import annotations

import torch
import transformers as T

DROP = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def scaled(model, seed: int = 0):
    """Weights ~ N(0, 0.1) (norm weights ~ 1 + N(0, 0.1)), in place; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name.lower() or "ln_" in name:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return model.eval()


def make(kind: str, config_index: int = 0):
    """``(model, kind of inputs)`` for one of :data:`CONFIGS`."""
    cls, kwargs, inputs = CONFIGS[kind][config_index]
    config_cls = cls.config_class
    config = config_cls(**kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return scaled(cls(config)), inputs


CONFIGS = {
    "gpt2": [
        (T.GPT2LMHeadModel, dict(vocab_size=101, n_positions=48, n_embd=48, n_layer=3, n_head=3,
                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                 bos_token_id=0, eos_token_id=0, pad_token_id=0), "decoder"),
        (T.GPT2LMHeadModel, dict(vocab_size=97, n_positions=40, n_embd=40, n_layer=2, n_head=5,
                                 n_inner=72, activation_function="relu", layer_norm_epsilon=1e-6,
                                 tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0,
                                 attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, pad_token_id=0),
         "decoder"),
    ],
    "llama": [
        (T.LlamaForCausalLM, dict(vocab_size=103, hidden_size=48, num_hidden_layers=2,
                                  num_attention_heads=6, num_key_value_heads=2,
                                  intermediate_size=80, max_position_embeddings=64,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0), "decoder"),
        (T.LlamaForCausalLM, dict(vocab_size=89, hidden_size=36, num_hidden_layers=3,
                                  num_attention_heads=3, num_key_value_heads=3,
                                  intermediate_size=60, max_position_embeddings=64,
                                  rope_parameters={"rope_type": "default", "rope_theta": 500.0},
                                  rms_norm_eps=1e-5, tie_word_embeddings=True,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0), "decoder"),
        # Llama 3.1's rope scaling, and yarn: trained on 16 positions, stretched 8x and 4x
        (T.LlamaForCausalLM, dict(vocab_size=97, hidden_size=48, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2,
                                  intermediate_size=80, max_position_embeddings=128,
                                  rope_parameters={"rope_type": "llama3", "rope_theta": 500.0,
                                                   "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 16},
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0), "decoder"),
        (T.LlamaForCausalLM, dict(vocab_size=97, hidden_size=48, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=4,
                                  intermediate_size=80, max_position_embeddings=64,
                                  rope_parameters={"rope_type": "yarn", "rope_theta": 500.0,
                                                   "factor": 4.0, "beta_fast": 16.0,
                                                   "original_max_position_embeddings": 16},
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0), "decoder"),
    ],
    "mistral": [  # a window shorter than the inputs (11), then none (full attention)
        (T.MistralForCausalLM, dict(vocab_size=103, hidden_size=48, num_hidden_layers=2,
                                    num_attention_heads=6, num_key_value_heads=2,
                                    intermediate_size=80, max_position_embeddings=64,
                                    sliding_window=4, bos_token_id=0, eos_token_id=0,
                                    pad_token_id=0), "decoder"),
        (T.MistralForCausalLM, dict(vocab_size=89, hidden_size=36, num_hidden_layers=2,
                                    num_attention_heads=3, num_key_value_heads=1,
                                    intermediate_size=60, max_position_embeddings=64,
                                    sliding_window=None, tie_word_embeddings=True,
                                    bos_token_id=0, eos_token_id=0, pad_token_id=0), "decoder"),
    ],
    "qwen2": [  # q/k/v biases, none on o_proj
        (T.Qwen2ForCausalLM, dict(vocab_size=103, hidden_size=48, num_hidden_layers=2,
                                  num_attention_heads=6, num_key_value_heads=2,
                                  intermediate_size=80, max_position_embeddings=64,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0), "decoder"),
        (T.Qwen2ForCausalLM, dict(vocab_size=89, hidden_size=36, num_hidden_layers=3,
                                  num_attention_heads=3, num_key_value_heads=1,
                                  intermediate_size=60, max_position_embeddings=64,
                                  rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                                  tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
                                  pad_token_id=0), "decoder"),
    ],
    "bert": [
        (T.BertForMaskedLM, dict(vocab_size=99, hidden_size=48, num_hidden_layers=2,
                                 num_attention_heads=3, intermediate_size=72,
                                 max_position_embeddings=40, **DROP), "encoder"),
        (T.BertModel, dict(vocab_size=91, hidden_size=40, num_hidden_layers=3,
                           num_attention_heads=5, intermediate_size=56,
                           max_position_embeddings=36, type_vocab_size=3, hidden_act="gelu_new",
                           **DROP), "encoder"),
    ],
    "bert_cls": [
        (T.BertForSequenceClassification, dict(vocab_size=99, hidden_size=44, num_hidden_layers=2,
                                               num_attention_heads=4, intermediate_size=60,
                                               max_position_embeddings=40, num_labels=3,
                                               **DROP), "encoder"),
        (T.RobertaForSequenceClassification, dict(vocab_size=95, hidden_size=36,
                                                  num_hidden_layers=2, num_attention_heads=3,
                                                  intermediate_size=52,
                                                  max_position_embeddings=40, num_labels=5,
                                                  **DROP), "roberta"),
    ],
    "roberta": [
        (T.RobertaForMaskedLM, dict(vocab_size=99, hidden_size=48, num_hidden_layers=2,
                                    num_attention_heads=3, intermediate_size=72,
                                    max_position_embeddings=42, type_vocab_size=1, **DROP),
         "roberta"),
        (T.RobertaModel, dict(vocab_size=95, hidden_size=40, num_hidden_layers=2,
                              num_attention_heads=5, intermediate_size=56,
                              max_position_embeddings=40, **DROP), "roberta"),
    ],
    "albert": [
        (T.AlbertForMaskedLM, dict(vocab_size=99, embedding_size=24, hidden_size=48,
                                   num_hidden_layers=3, num_attention_heads=3,
                                   intermediate_size=72, max_position_embeddings=40,
                                   classifier_dropout_prob=0.0, **DROP), "encoder"),
        (T.AlbertModel, dict(vocab_size=93, embedding_size=20, hidden_size=40,
                             num_hidden_layers=2, num_attention_heads=5, intermediate_size=56,
                             max_position_embeddings=40, hidden_act="gelu",
                             classifier_dropout_prob=0.0, **DROP), "encoder"),
    ],
    "electra": [
        (T.ElectraForPreTraining, dict(vocab_size=99, embedding_size=24, hidden_size=48,
                                       num_hidden_layers=2, num_attention_heads=3,
                                       intermediate_size=72, max_position_embeddings=40, **DROP),
         "encoder"),
        (T.ElectraForMaskedLM, dict(vocab_size=97, embedding_size=20, hidden_size=36,
                                    num_hidden_layers=2, num_attention_heads=3,
                                    intermediate_size=60, max_position_embeddings=40, **DROP),
         "encoder"),
    ],
    "vit": [
        (T.ViTForImageClassification, dict(hidden_size=48, num_hidden_layers=2,
                                           num_attention_heads=3, intermediate_size=72,
                                           image_size=24, patch_size=8, num_labels=5, **DROP),
         "image"),
        (T.ViTForImageClassification, dict(hidden_size=40, num_hidden_layers=3,
                                           num_attention_heads=5, intermediate_size=56,
                                           image_size=20, patch_size=5, num_channels=2,
                                           encoder_stride=5, num_labels=3, **DROP), "image"),
    ],
    "t5_v1_1": [
        (T.T5ForConditionalGeneration, dict(vocab_size=101, d_model=48, d_kv=12, d_ff=72,
                                            num_layers=2, num_heads=3,
                                            feed_forward_proj="gated-gelu",
                                            tie_word_embeddings=False, dropout_rate=0.0,
                                            relative_attention_num_buckets=16,
                                            relative_attention_max_distance=20,
                                            decoder_start_token_id=0, pad_token_id=0,
                                            eos_token_id=1), "seq2seq"),
        (T.T5ForConditionalGeneration, dict(vocab_size=89, d_model=40, d_kv=10, d_ff=56,
                                            num_layers=3, num_heads=5,
                                            feed_forward_proj="gated-gelu",
                                            tie_word_embeddings=False, dropout_rate=0.0,
                                            decoder_start_token_id=0, pad_token_id=0,
                                            eos_token_id=1), "seq2seq"),
    ],
    "t5_v1_0": [
        (T.T5ForConditionalGeneration, dict(vocab_size=101, d_model=48, d_kv=16, d_ff=72,
                                            num_layers=2, num_heads=3, dropout_rate=0.0,
                                            decoder_start_token_id=0, pad_token_id=0,
                                            eos_token_id=1), "seq2seq"),
    ],
}


def untie_t5(model):
    """A T5 v1.1 checkpoint as Google released them: an lm head of its own. transformers
    5.24's T5Config keeps ``tie_word_embeddings`` true for v1.1 configs, so the head is
    untied by hand here (and the config told), as the published weights are."""
    import torch.nn as nn

    g = torch.Generator().manual_seed(7)
    model.lm_head.weight = nn.Parameter(0.1 * torch.randn(model.lm_head.weight.shape, generator=g))
    model.config.tie_word_embeddings = False
    return model


DEBERTA = dict(type_vocab_size=0, relative_attention=True, position_biased_input=False,
               max_relative_positions=-1, **DROP)
CONFIGS["xlnet"] = [  # "xlnet": padding, segments and a perm_mask; "xlnet_query": the query
    # stream too (perm_mask and target_mapping)
    (T.XLNetLMHeadModel, dict(vocab_size=53, d_model=40, n_layer=2, n_head=5, d_inner=72,
                              mem_len=9, dropout=0.0), "xlnet"),
    (T.XLNetLMHeadModel, dict(vocab_size=61, d_model=36, n_layer=3, n_head=3, d_inner=50,
                              ff_activation="relu", layer_norm_eps=1e-6, mem_len=None,
                              tie_word_embeddings=False, dropout=0.0), "xlnet_query"),
]
CONFIGS["deberta"] = [  # v3 (shared keys, normed relative embeddings), v2 (neither)
    (T.DebertaV2ForMaskedLM, dict(vocab_size=67, hidden_size=40, num_hidden_layers=2,
                                  num_attention_heads=5, intermediate_size=72,
                                  max_position_embeddings=40, position_buckets=8,
                                  norm_rel_ebd="layer_norm", share_att_key=True,
                                  pos_att_type="p2c|c2p", **DEBERTA), "encoder"),
    (T.DebertaV2ForMaskedLM, dict(vocab_size=59, hidden_size=36, num_hidden_layers=3,
                                  num_attention_heads=3, intermediate_size=50,
                                  max_position_embeddings=30, position_buckets=6,
                                  norm_rel_ebd="none", share_att_key=False, hidden_act="gelu_new",
                                  layer_norm_eps=1e-6, pos_att_type="c2p|p2c", **DEBERTA),
     "encoder"),
]

# A second config of every class the lists above have once: other odd widths and head counts.
CONFIGS["more"] = [
    (T.BertForMaskedLM, dict(vocab_size=83, hidden_size=30, num_hidden_layers=3,
                             num_attention_heads=5, intermediate_size=46,
                             max_position_embeddings=24, hidden_act="relu", **DROP), "encoder"),
    (T.BertModel, dict(vocab_size=77, hidden_size=28, num_hidden_layers=1, num_attention_heads=7,
                       intermediate_size=36, max_position_embeddings=20, **DROP), "encoder"),
    (T.RobertaForMaskedLM, dict(vocab_size=81, hidden_size=42, num_hidden_layers=3,
                                num_attention_heads=7, intermediate_size=50,
                                max_position_embeddings=30, **DROP), "roberta"),
    (T.AlbertForMaskedLM, dict(vocab_size=85, embedding_size=18, hidden_size=30,
                               num_hidden_layers=4, num_attention_heads=5, intermediate_size=44,
                               max_position_embeddings=24, classifier_dropout_prob=0.0, **DROP),
     "encoder"),
    (T.ElectraForPreTraining, dict(vocab_size=79, embedding_size=26, hidden_size=26,
                                   num_hidden_layers=3, num_attention_heads=2,
                                   intermediate_size=40, max_position_embeddings=24, **DROP),
     "encoder"),
    (T.ElectraForMaskedLM, dict(vocab_size=87, embedding_size=14, hidden_size=42,
                                num_hidden_layers=1, num_attention_heads=7, intermediate_size=62,
                                max_position_embeddings=24, **DROP), "encoder"),
    (T.BertForSequenceClassification, dict(vocab_size=73, hidden_size=30, num_hidden_layers=1,
                                           num_attention_heads=5, intermediate_size=34,
                                           max_position_embeddings=20, num_labels=7, **DROP),
     "encoder"),
    (T.RobertaForSequenceClassification, dict(vocab_size=75, hidden_size=28,
                                              num_hidden_layers=3, num_attention_heads=7,
                                              intermediate_size=44, max_position_embeddings=26,
                                              num_labels=2, **DROP), "roberta"),
    (T.XLNetModel, dict(vocab_size=41, d_model=30, n_layer=2, n_head=2, d_inner=46, mem_len=5,
                        dropout=0.0), "xlnet"),
    (T.DebertaV2Model, dict(vocab_size=45, hidden_size=28, num_hidden_layers=2,
                            num_attention_heads=7, intermediate_size=44,
                            max_position_embeddings=50, position_buckets=10,
                            norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p",
                            **DEBERTA), "encoder"),
    (T.DebertaV2ForMaskedLM, dict(vocab_size=47, hidden_size=30, num_hidden_layers=2,
                                  num_attention_heads=5, intermediate_size=46,
                                  max_position_embeddings=24, position_buckets=-1,
                                  max_relative_positions=12, norm_rel_ebd="layer_norm",
                                  share_att_key=False, pos_att_type="c2p", legacy=False,
                                  **{k: v for k, v in DEBERTA.items()
                                     if k != "max_relative_positions"}), "encoder"),
]
