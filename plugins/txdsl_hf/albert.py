"""ALBERT (Lan et al. 2020): ``AlbertForMaskedLM``, ``AlbertModel`` <-> ``specs/albert.tx``.

One layer's parameters shared by every layer (``share = all``): HF's single
``albert_layer_groups.0.albert_layers.0`` is txdsl's ``encoder.layers.0``,
which the other layers share; the factorized embedding's projection is HF's
``encoder.embedding_hidden_mapping_in``.
"""

from __future__ import annotations

from txdsl.interop import HFFamily, Rename
from txdsl.interop.family import HF_ACTIVATIONS, first_layer, head_kinds, refuse, txdsl_act

from .bert import embedding_rules, mlm_rules

L, H = "encoder.layers.0.", "albert.encoder.albert_layer_groups.0.albert_layers.0."


class ALBERT(HFFamily):
    model_type = "albert"
    zoo = "albert.tx"
    architectures = {"AlbertForMaskedLM": "albert_mlm", "AlbertModel": "albert"}
    bare = {"AlbertModel": "albert."}
    ignore = (r"predictions\.decoder\.bias", r".*position_ids")
    tie = ("predictions.decoder.weight", "albert.embeddings.word_embeddings.weight")

    def params(self, c, arch):
        refuse(c, num_hidden_groups=1, inner_group_num=1, position_embedding_type="absolute")
        return dict(vocab=c.vocab_size, d_model=c.hidden_size, embed=c.embedding_size,
                    heads=c.num_attention_heads, layers=c.num_hidden_layers,
                    context=c.max_position_embeddings, d_ff=c.intermediate_size,
                    eps=c.layer_norm_eps)

    def body(self, c, arch, tied):
        act = txdsl_act(c.hidden_act, "hidden_act")
        lines = [f"embedding {{ token_types = {c.type_vocab_size} }}"]
        if act != "gelu_tanh":
            lines.append(f"encoder {{ ffn.act = {act} }}")
        if arch == "AlbertForMaskedLM":
            lines.append(f"head = mlm(tied: {'true' if tied else 'false'}, act: {act}, eps: eps)")
        return lines

    def counts(self, c):
        return {}

    def rules(self, c, arch, tied):
        up = "albert.encoder.embedding_hidden_mapping_in."
        rules = embedding_rules("albert.") + [
            Rename("embedding.projection.weight", up + "weight"),
            Rename("embedding.projection.bias", up + "bias")]
        for p in ("weight", "bias"):
            for ours, theirs in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"),
                                 ("out_proj", "dense")):
                rules.append(Rename(L + f"attention.{ours}.{p}", H + f"attention.{theirs}.{p}"))
            rules += [Rename(L + f"attention_norm.{p}", H + f"attention.LayerNorm.{p}"),
                      Rename(L + f"ffn.up.{p}", H + f"ffn.{p}"),
                      Rename(L + f"ffn.down.{p}", H + f"ffn_output.{p}"),
                      Rename(L + f"ffn_norm.{p}", H + f"full_layer_layer_norm.{p}")]
        if arch == "AlbertForMaskedLM":
            rules += mlm_rules("predictions", "dense", "LayerNorm", tied)
        else:
            rules += [Rename("heads.pooler.dense.weight", "albert.pooler.weight"),
                      Rename("heads.pooler.dense.bias", "albert.pooler.bias")]
        return rules

    def detect(self, ir):
        layer, heads = first_layer(ir, "encoder"), head_kinds(ir)
        if (ir.decoder is not None or layer is None or ir.embedding.tokens is None
                or len(ir.encoder.layers) < 2 or ir.encoder.layers[1].shares != 0):
            return None
        return "AlbertForMaskedLM" if "mlm" in heads else "AlbertModel"

    def hf_config(self, ir, arch):
        layer = first_layer(ir, "encoder")
        mlm = head_kinds(ir).get("mlm")
        return dict(vocab_size=ir.embedding.tokens, embedding_size=ir.embedding.size,
                    hidden_size=ir.d_model, num_attention_heads=layer.attention.args["heads"],
                    num_hidden_layers=len(ir.encoder.layers),
                    intermediate_size=layer.ffn.args["hidden"],
                    layer_norm_eps=layer.norm.args["eps"],
                    hidden_act=HF_ACTIVATIONS[layer.ffn.args["act"]],
                    max_position_embeddings=ir.embedding.position.args["max_len"],
                    type_vocab_size=ir.embedding.token_types, hidden_dropout_prob=layer.dropout,
                    attention_probs_dropout_prob=layer.attention.args.get("dropout", 0.0),
                    classifier_dropout_prob=0.0,
                    tie_word_embeddings=bool(mlm is not None and mlm.args.get("tied")))
