"""The bundled specs: each checks, and its parameter count is the published one.

Where Hugging Face has the model, the count is also compared with the real
model built from its config class (on the meta device: nothing allocated,
nothing downloaded), which is the reference the later parity tests use.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from txdsl.front.estimate import estimate
from txdsl.plugins import get_registry

SPECS = Path(__file__).resolve().parent.parent / "specs"

PUBLISHED = {  # (file, model): parameters, as published or as the reference class counts them
    ("gpt2.tx", "gpt2"): 124_439_808,
    ("bert.tx", "bert"): 109_482_240,
    ("vit.tx", "vit"): 86_389_248,
    ("t5.tx", "t5_small"): 60_506_624,
    ("roberta.tx", "roberta"): 124_645_632,
    ("albert.tx", "albert"): 11_683_584,
    ("deberta.tx", "deberta_v3_small"): 141_304_320,
    ("llama.tx", "llama"): 1_100_048_384,  # TinyLlama-1.1B
}


def count(file: str, model: str) -> int:
    return estimate(txdsl.parse_file(SPECS / file, model=model), get_registry()).params


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.tx")))
def test_every_model_in_every_spec_resolves(spec):
    irs = txdsl.parse_all(SPECS / spec)
    assert irs, spec
    for ir in irs:
        est = estimate(ir, get_registry())
        assert est.params > 0 and est.flops_per_token > 0 and not est.unknown


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_published_parameter_counts(key):
    assert count(*key) == PUBLISHED[key]


def hf_count(factory) -> int:
    with torch.device("meta"):
        model = factory()
    return sum(p.numel() for p in model.parameters())


def _t5_v1_1_small():
    import transformers as T

    cfg = T.T5Config(d_model=512, d_ff=1024, num_heads=6, num_layers=8, d_kv=64,
                     feed_forward_proj="gated-gelu")
    cfg.tie_word_embeddings = False  # the constructor argument is overridden in transformers 5
    model = T.T5ForConditionalGeneration(cfg)
    # google/t5-v1_1-small: the LM head is untied, but encoder and decoder still share the
    # token embedding (with tying off, transformers 5 gives each its own copy).
    model.encoder.embed_tokens.weight = model.shared.weight
    model.decoder.embed_tokens.weight = model.shared.weight
    return model


def _hf_models():
    import transformers as T

    bert = T.BertConfig()
    albert = T.AlbertConfig(vocab_size=30000, embedding_size=128, hidden_size=768,
                            num_attention_heads=12, intermediate_size=3072)
    electra = T.ElectraConfig(embedding_size=128, hidden_size=256, num_attention_heads=4,
                              intermediate_size=1024)
    deberta = T.DebertaV2Config(vocab_size=128100, hidden_size=768, num_hidden_layers=6,
                                num_attention_heads=12, intermediate_size=3072,
                                relative_attention=True, position_buckets=256,
                                norm_rel_ebd="layer_norm", share_att_key=True,
                                pos_att_type=["p2c", "c2p"], type_vocab_size=0,
                                position_biased_input=False, max_relative_positions=-1)
    return {
        ("gpt2.tx", "gpt2"): lambda: T.GPT2LMHeadModel(T.GPT2Config()),
        ("bert.tx", "bert"): lambda: T.BertModel(bert),
        ("bert.tx", "bert_mlm"): lambda: T.BertForMaskedLM(bert),
        ("roberta.tx", "roberta"): lambda: T.RobertaModel(T.RobertaConfig(
            vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)),
        ("albert.tx", "albert"): lambda: T.AlbertModel(albert),
        ("albert.tx", "albert_mlm"): lambda: T.AlbertForMaskedLM(albert),
        ("electra.tx", "electra_small"): lambda: T.ElectraForPreTraining(electra),
        ("electra.tx", "electra_small_generator"): lambda: T.ElectraForMaskedLM(electra),
        ("vit.tx", "vit"): lambda: T.ViTModel(T.ViTConfig()),
        ("vit.tx", "vit_classifier"): lambda: T.ViTForImageClassification(
            T.ViTConfig(num_labels=1000)),
        ("t5.tx", "t5_small"): lambda: T.T5Model(T.T5Config()),
        ("t5.tx", "t5_v1_1_small"): _t5_v1_1_small,
        ("deberta.tx", "deberta_v3_small"): lambda: T.DebertaV2Model(deberta),
        ("llama.tx", "llama"): lambda: T.LlamaForCausalLM(T.LlamaConfig(
            vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
            num_attention_heads=32, num_key_value_heads=4, tie_word_embeddings=False)),
    }


HF = _hf_models()


@pytest.mark.parametrize("key", sorted(HF), ids=lambda k: k[1])
def test_parameter_count_equals_hugging_face(key):
    assert count(*key) == hf_count(HF[key])


def test_xlnet_count_against_hugging_face():
    import transformers as T

    cfg = T.XLNetConfig(d_model=768, n_layer=12, n_head=12, d_inner=3072)
    hf = hf_count(lambda: T.XLNetLMHeadModel(cfg))
    # mask_emb (the query stream's start) is the relative_xl position's (query_stream: true)
    assert count("xlnet.tx", "xlnet") == hf


def test_vanilla_transformer_count_against_torch():
    ref = torch.nn.Transformer(d_model=512, nhead=8, num_encoder_layers=6,
                               num_decoder_layers=6, dim_feedforward=2048)
    stacks = sum(p.numel() for p in ref.parameters()) - 2 * 2 * 512  # minus its 2 final norms
    assert count("transformer.tx", "transformer") == 37000 * 512 + stacks


def test_transformer_xl_count_by_hand():
    d, h, hd, d_ff, n, vocab = 512, 8, 64, 2048, 12, 204
    attn = 3 * d * h * hd + h * hd * d + d * h * hd + 2 * h * hd  # qkv, o, r_net, u and v
    ffn = d * d_ff + d_ff + d_ff * d + d
    layer = attn + ffn + 2 * 2 * d  # two post-LayerNorms
    assert count("transformer_xl.tx", "transformer_xl") == vocab * d + n * layer + vocab


def _kinds_in(value, found: set[tuple[str, str]]) -> None:
    """Every (family, kind) of the components inside an IR dump."""
    if isinstance(value, dict):
        if isinstance(value.get("family"), str) and isinstance(value.get("kind"), str):
            found.add((value["family"], value["kind"]))
        for v in value.values():
            _kinds_in(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _kinds_in(v, found)


def test_every_built_in_kind_is_used_by_a_bundled_spec():
    """A kind the catalogue ships is shown in use: each appears in some spec of specs/."""
    used: set[tuple[str, str]] = set()
    for path in SPECS.glob("*.tx"):
        for ir in txdsl.parse_all(path):
            _kinds_in(ir.model_dump(), used)
    registry = get_registry()
    built_in = {(impl.family, impl.name) for impl in registry.all()
                if registry.plugins[impl.plugin].builtin}
    assert built_in, "no built-in kinds registered"
    missing = sorted(f"{family}/{kind}" for family, kind in built_in - used)
    assert not missing, f"built-in kinds no spec in specs/ uses: {missing}"
