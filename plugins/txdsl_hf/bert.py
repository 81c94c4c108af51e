"""BERT (Devlin et al. 2019) and RoBERTa (Liu et al. 2019): ``BertForMaskedLM``,
``BertModel``, ``RobertaForMaskedLM``, ``RobertaModel`` <-> ``specs/bert.tx``,
``specs/roberta.tx``.

Post-LN encoder layers: HF's ``attention.output.LayerNorm`` is txdsl's
``attention_norm`` and ``output.LayerNorm`` its ``ffn_norm``. The MLM decoder
is tied to the word embeddings unless the checkpoint says otherwise; its bias
is one tensor with ``predictions.bias`` in HF (``decoder.bias`` is that alias).
"""

from __future__ import annotations

from txdsl.interop import HFFamily, Rename
from txdsl.interop.family import HF_ACTIVATIONS, first_layer, head_kinds, refuse, txdsl_act


def encoder_rules(prefix: str) -> list:
    """One BERT-style encoder layer (BERT, RoBERTa, ELECTRA): HF ``{prefix}encoder.layer.{i}``."""
    L, H = "encoder.layers.{i}.", prefix + "encoder.layer.{i}."
    rules = []
    for p in ("weight", "bias"):
        for ours, theirs in (("q_proj", "self.query"), ("k_proj", "self.key"),
                             ("v_proj", "self.value"), ("out_proj", "output.dense")):
            rules.append(Rename(L + f"attention.{ours}.{p}", H + f"attention.{theirs}.{p}"))
        rules += [Rename(L + f"attention_norm.{p}", H + f"attention.output.LayerNorm.{p}"),
                  Rename(L + f"ffn.up.{p}", H + f"intermediate.dense.{p}"),
                  Rename(L + f"ffn.down.{p}", H + f"output.dense.{p}"),
                  Rename(L + f"ffn_norm.{p}", H + f"output.LayerNorm.{p}")]
    return rules


def embedding_rules(prefix: str) -> list:
    E = prefix + "embeddings."
    return [Rename("embedding.tokens.weight", E + "word_embeddings.weight"),
            Rename("embedding.position.embed.weight", E + "position_embeddings.weight"),
            Rename("embedding.token_types.weight", E + "token_type_embeddings.weight"),
            Rename("embedding.norm.weight", E + "LayerNorm.weight"),
            Rename("embedding.norm.bias", E + "LayerNorm.bias")]


def mlm_rules(head: str, dense: str, norm: str, tied: bool) -> list:
    rules = [Rename("heads.mlm.transform.weight", f"{head}.{dense}.weight"),
             Rename("heads.mlm.transform.bias", f"{head}.{dense}.bias"),
             Rename("heads.mlm.norm.weight", f"{head}.{norm}.weight"),
             Rename("heads.mlm.norm.bias", f"{head}.{norm}.bias"),
             Rename("heads.mlm.bias", f"{head}.bias")]
    return rules + ([] if tied else [Rename("heads.mlm.decoder.weight", f"{head}.decoder.weight")])


def encoder_config(ir) -> dict:
    layer = first_layer(ir, "encoder")
    return dict(vocab_size=ir.embedding.tokens, hidden_size=ir.d_model,
                num_attention_heads=layer.attention.args["heads"],
                num_hidden_layers=len(ir.encoder.layers),
                intermediate_size=layer.ffn.args["hidden"], layer_norm_eps=layer.norm.args["eps"],
                hidden_act=HF_ACTIVATIONS[layer.ffn.args["act"]],
                type_vocab_size=ir.embedding.token_types, hidden_dropout_prob=layer.dropout,
                attention_probs_dropout_prob=layer.attention.args.get("dropout", 0.0))


class BERT(HFFamily):
    model_type = "bert"
    zoo = "bert.tx"
    architectures = {"BertForMaskedLM": "bert_mlm", "BertModel": "bert",
                     "BertForSequenceClassification": "bert_classifier"}
    bare = {"BertModel": "bert."}
    prefix = "bert."
    ignore = (r"cls\.predictions\.decoder\.bias", r".*position_ids")
    tie = ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight")
    head_prefix = "cls.predictions"
    classifier = (("dense", "bert.pooler.dense"), ("out", "classifier"))

    def context(self, c) -> int:
        return c.max_position_embeddings

    def params(self, c, arch):
        refuse(c, is_decoder=False, add_cross_attention=False,
               position_embedding_type="absolute")
        params = dict(vocab=c.vocab_size, d_model=c.hidden_size, heads=c.num_attention_heads,
                      layers=c.num_hidden_layers, context=self.context(c),
                      d_ff=c.intermediate_size, eps=c.layer_norm_eps,
                      drop=c.hidden_dropout_prob)
        if arch.endswith("ForSequenceClassification"):
            refuse(c, problem_type=None)
            params["classes"] = c.num_labels
        return params

    def body(self, c, arch, tied):
        act = txdsl_act(c.hidden_act, "hidden_act")
        lines = [f"embedding {{ token_types = {c.type_vocab_size} }}"]
        if act != "gelu":
            lines.append(f"encoder {{ ffn.act = {act} }}")
        if arch.endswith("ForMaskedLM"):
            lines.append(f"head = mlm(tied: {'true' if tied else 'false'}, act: {act}, eps: eps)")
        return lines

    def rules(self, c, arch, tied):
        rules = embedding_rules(self.prefix) + encoder_rules(self.prefix)
        if arch.endswith("ForMaskedLM"):
            rules += self.head_rules(tied)
        elif arch.endswith("ForSequenceClassification"):
            rules += [Rename(f"heads.pooled_classifier.{ours}.{p}", f"{theirs}.{p}")
                      for ours, theirs in self.classifier for p in ("weight", "bias")]
        else:
            rules += [Rename("heads.pooler.dense.weight", self.prefix + "pooler.dense.weight"),
                      Rename("heads.pooler.dense.bias", self.prefix + "pooler.dense.bias")]
        return rules

    def head_rules(self, tied):
        return mlm_rules(self.head_prefix, "transform.dense", "transform.LayerNorm", tied)

    def is_mine(self, ir) -> bool:
        pos = ir.embedding.position
        return (pos is not None and pos.kind == "learned"
                and pos.args.get("padding_idx") is None and ir.embedding.size == ir.d_model)

    def detect(self, ir):
        layer, heads = first_layer(ir, "encoder"), head_kinds(ir)
        if (ir.decoder is not None or layer is None or layer.residual != "post"
                or ir.embedding.tokens is None or not self.is_mine(ir)):
            return None
        if "mlm" in heads:
            return [a for a in self.architectures if a.endswith("ForMaskedLM")][0]
        if set(heads) == {"pooled_classifier"}:
            return [a for a in self.architectures if a.endswith("Classification")][0]
        if set(heads) == {"pooler"}:
            return [a for a in self.architectures if a.endswith("Model")][0]
        return None

    def hf_config(self, ir, arch):
        kw = encoder_config(ir)
        kw["max_position_embeddings"] = ir.embedding.position.args["max_len"]
        mlm = head_kinds(ir).get("mlm")
        kw["tie_word_embeddings"] = bool(mlm is not None and mlm.args.get("tied"))
        cls = head_kinds(ir).get("pooled_classifier")
        if cls is not None:
            kw["num_labels"] = cls.args["classes"]
        return kw


class RoBERTa(BERT):
    model_type = "roberta"
    zoo = "roberta.tx"
    architectures = {"RobertaForMaskedLM": "roberta_mlm", "RobertaModel": "roberta",
                     "RobertaForSequenceClassification": "roberta_classifier"}
    bare = {"RobertaModel": "roberta."}
    prefix = "roberta."
    ignore = (r"lm_head\.decoder\.bias", r".*position_ids")
    tie = ("lm_head.decoder.weight", "roberta.embeddings.word_embeddings.weight")
    classifier = (("dense", "classifier.dense"), ("out", "classifier.out_proj"))

    def context(self, c) -> int:
        return c.max_position_embeddings - c.pad_token_id - 1

    def params(self, c, arch):
        refuse(c, pad_token_id=1)
        return super().params(c, arch)

    def head_rules(self, tied):
        return mlm_rules("lm_head", "dense", "layer_norm", tied)

    def is_mine(self, ir) -> bool:
        pos = ir.embedding.position
        return pos is not None and pos.kind == "learned" and pos.args.get("padding_idx") == 1

    def hf_config(self, ir, arch):
        kw = super().hf_config(ir, arch)
        kw.update(pad_token_id=1, bos_token_id=0, eos_token_id=2)
        return kw
