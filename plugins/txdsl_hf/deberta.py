"""DeBERTa v2 and v3 (He et al. 2021, https://arxiv.org/abs/2006.03654; v3:
https://arxiv.org/abs/2111.09543): ``DebertaV2ForMaskedLM``, ``DebertaV2Model`` <->
``specs/deberta.tx``.

Post-LN encoder layers as BERT's (``attention.self.{query,key,value}_proj``,
``attention.output``); the relative embeddings (``encoder.rel_embeddings``,
with v3's ``encoder.LayerNorm``) are the stack's ``disentangled`` position;
v2's ``pos_key_proj``/``pos_query_proj`` exist when ``share_att_key`` is off.
The MLM head: the legacy BERT-style ``cls.predictions`` (tied decoder, its
bias one tensor with ``predictions.bias``) or, with ``legacy = False``,
``lm_predictions.lm_head`` (always multiplied by the word embeddings); both
compute txdsl's ``mlm(tied: true)``.
"""

from __future__ import annotations

from txdsl.interop import HFFamily, MappingError, Rename
from txdsl.interop.family import HF_ACTIVATIONS, first_layer, head_kinds, refuse, txdsl_act

L, H = "encoder.layers.{i}.", "deberta.encoder.layer.{i}."


def terms(c) -> list[str]:
    return list(c.pos_att_type or [])


class DeBERTaV2(HFFamily):
    model_type = "deberta-v2"
    zoo = "deberta.tx"
    architectures = {"DebertaV2ForMaskedLM": "deberta_v3_small_mlm",
                     "DebertaV2Model": "deberta_v3_small"}
    bare = {"DebertaV2Model": "deberta."}
    ignore = (r"cls\.predictions\.decoder\.bias", r".*position_ids")
    tie = ("cls.predictions.decoder.weight", "deberta.embeddings.word_embeddings.weight")

    def params(self, c, arch):
        refuse(c, relative_attention=True, position_biased_input=False, type_vocab_size=0,
               conv_kernel_size=0)
        if getattr(c, "embedding_size", c.hidden_size) != c.hidden_size:
            raise MappingError(f"DebertaV2Config: embedding_size ({c.embedding_size}) != "
                               f"hidden_size ({c.hidden_size}) is not supported yet")
        return dict(vocab=c.vocab_size, d_model=c.hidden_size, heads=c.num_attention_heads,
                    layers=c.num_hidden_layers, context=c.max_position_embeddings,
                    eps=c.layer_norm_eps, drop=c.hidden_dropout_prob)

    def body(self, c, arch, tied):
        act = txdsl_act(c.hidden_act, "DebertaV2Config.hidden_act")
        norm = "layer_norm" in [x.strip() for x in c.norm_rel_ebd.lower().split("|")]
        over = [f"position.buckets = {c.position_buckets}",
                f"ffn.hidden = {c.intermediate_size}"]
        if c.max_relative_positions >= 1:
            over.append(f"position.max_relative_positions = {c.max_relative_positions}")
        if not norm:
            over.append("position.norm = false")
        if not c.share_att_key:
            over.append("attention.share_att_key = false")
        if terms(c) != ["p2c", "c2p"]:
            over.append(f"attention.pos_att_type = \"{'|'.join(terms(c))}\"")
        if c.attention_probs_dropout_prob != c.hidden_dropout_prob:
            over.append(f"attention.dropout = {c.attention_probs_dropout_prob!r}")
        if act != "gelu":
            over.append(f"ffn.act = {act}")
        lines = [f"encoder {{ {'; '.join(over)} }}"]
        if arch == "DebertaV2ForMaskedLM" and (act != "gelu" or not tied):
            lines.append(f"head = mlm(tied: {'true' if tied else 'false'}, act: {act}, eps: eps)")
        return lines

    def rules(self, c, arch, tied):
        E = "deberta.embeddings."
        rules = [Rename("embedding.tokens.weight", E + "word_embeddings.weight"),
                 Rename("embedding.norm.weight", E + "LayerNorm.weight"),
                 Rename("embedding.norm.bias", E + "LayerNorm.bias"),
                 Rename("encoder.position.rel_embeddings.weight",
                        "deberta.encoder.rel_embeddings.weight")]
        if "layer_norm" in [x.strip() for x in c.norm_rel_ebd.lower().split("|")]:
            rules += [Rename(f"encoder.position.norm.{p}", f"deberta.encoder.LayerNorm.{p}")
                      for p in ("weight", "bias")]
        pos = []
        if not c.share_att_key:
            pos = [n for n, t in (("pos_key_proj", "c2p"), ("pos_query_proj", "p2c"))
                   if t in terms(c)]
        for p in ("weight", "bias"):
            for ours, theirs in (("q_proj", "query_proj"), ("k_proj", "key_proj"),
                                 ("v_proj", "value_proj"), *((n, n) for n in pos)):
                rules.append(Rename(L + f"attention.{ours}.{p}",
                                    H + f"attention.self.{theirs}.{p}"))
            rules += [Rename(L + f"attention.out_proj.{p}", H + f"attention.output.dense.{p}"),
                      Rename(L + f"attention_norm.{p}", H + f"attention.output.LayerNorm.{p}"),
                      Rename(L + f"ffn.up.{p}", H + f"intermediate.dense.{p}"),
                      Rename(L + f"ffn.down.{p}", H + f"output.dense.{p}"),
                      Rename(L + f"ffn_norm.{p}", H + f"output.LayerNorm.{p}")]
        if arch == "DebertaV2ForMaskedLM":
            rules += self.head_rules(c, tied)
        return rules

    def head_rules(self, c, tied):
        legacy = getattr(c, "legacy", True)
        head = "cls.predictions" if legacy else "lm_predictions.lm_head"
        dense, norm = (("transform.dense", "transform.LayerNorm") if legacy
                       else ("dense", "LayerNorm"))
        rules = [Rename("heads.mlm.transform.weight", f"{head}.{dense}.weight"),
                 Rename("heads.mlm.transform.bias", f"{head}.{dense}.bias"),
                 Rename("heads.mlm.norm.weight", f"{head}.{norm}.weight"),
                 Rename("heads.mlm.norm.bias", f"{head}.{norm}.bias"),
                 Rename("heads.mlm.bias", f"{head}.bias")]
        if not tied and legacy:
            rules.append(Rename("heads.mlm.decoder.weight", f"{head}.decoder.weight"))
        return rules

    def detect(self, ir):
        layer, heads = first_layer(ir, "encoder"), head_kinds(ir)
        if (ir.decoder is not None or layer is None or ir.encoder.position is None
                or ir.encoder.position.kind != "disentangled"
                or layer.attention.kind != "disentangled"):
            return None
        if set(heads) == {"mlm"}:
            return "DebertaV2ForMaskedLM"
        return "DebertaV2Model" if not heads else None

    def hf_config(self, ir, arch):
        layer = first_layer(ir, "encoder")
        att, pos = layer.attention.args, ir.encoder.position.args
        kw = dict(vocab_size=ir.embedding.tokens, hidden_size=ir.d_model,
                  num_attention_heads=att["heads"], num_hidden_layers=len(ir.encoder.layers),
                  intermediate_size=layer.ffn.args["hidden"],
                  hidden_act=HF_ACTIVATIONS[layer.ffn.args["act"]],
                  max_position_embeddings=ir.params["context"],
                  layer_norm_eps=layer.norm.args["eps"],
                  hidden_dropout_prob=layer.dropout,
                  attention_probs_dropout_prob=att.get("dropout", 0.0),
                  type_vocab_size=0, relative_attention=True, position_biased_input=False,
                  position_buckets=pos.get("buckets", 256),
                  max_relative_positions=pos.get("max_relative_positions", -1),
                  norm_rel_ebd="layer_norm" if pos.get("norm", True) else "none",
                  share_att_key=att.get("share_att_key", True),
                  pos_att_type=att.get("pos_att_type", "p2c|c2p"), legacy=True)
        mlm = head_kinds(ir).get("mlm")
        kw["tie_word_embeddings"] = bool(mlm is None or mlm.args.get("tied"))
        return kw
