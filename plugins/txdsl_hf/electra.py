"""ELECTRA (Clark et al. 2020): ``ElectraForPreTraining`` (discriminator) and
``ElectraForMaskedLM`` (generator) <-> ``specs/electra.tx``.

The BERT encoder layout under ``electra.``; the embedding (width
``embedding_size``) is projected up by ``electra.embeddings_project``.
"""

from __future__ import annotations

from txdsl.interop import HFFamily, Rename
from txdsl.interop.family import first_layer, head_kinds, refuse, txdsl_act

from .bert import embedding_rules, encoder_config, encoder_rules


class ELECTRA(HFFamily):
    model_type = "electra"
    zoo = "electra.tx"
    architectures = {"ElectraForPreTraining": "electra_small",
                     "ElectraForMaskedLM": "electra_small_generator"}
    ignore = (r".*position_ids",)
    tie = ("generator_lm_head.weight", "electra.embeddings.word_embeddings.weight")

    def params(self, c, arch):
        refuse(c, position_embedding_type="absolute")
        return dict(vocab=c.vocab_size, d_model=c.hidden_size, embed=c.embedding_size,
                    heads=c.num_attention_heads, layers=c.num_hidden_layers,
                    context=c.max_position_embeddings, d_ff=c.intermediate_size,
                    eps=c.layer_norm_eps, drop=c.hidden_dropout_prob)

    def body(self, c, arch, tied):
        act = txdsl_act(c.hidden_act, "hidden_act")
        lines = [f"embedding {{ token_types = {c.type_vocab_size} }}"]
        if act != "gelu":
            lines.append(f"encoder {{ ffn.act = {act} }}")
        if arch == "ElectraForMaskedLM":  # HF's generator head always uses gelu
            lines.append(f"head = mlm(tied: {'true' if tied else 'false'}, act: gelu, eps: eps)")
        else:
            lines.append(f"head = rtd(act: {act})")
        return lines

    def rules(self, c, arch, tied):
        rules = embedding_rules("electra.") + encoder_rules("electra.")
        if c.embedding_size != c.hidden_size:
            rules += [Rename("embedding.projection.weight", "electra.embeddings_project.weight"),
                      Rename("embedding.projection.bias", "electra.embeddings_project.bias")]
        if arch == "ElectraForMaskedLM":
            g = "generator_predictions."
            rules += [Rename("heads.mlm.transform.weight", g + "dense.weight"),
                      Rename("heads.mlm.transform.bias", g + "dense.bias"),
                      Rename("heads.mlm.norm.weight", g + "LayerNorm.weight"),
                      Rename("heads.mlm.norm.bias", g + "LayerNorm.bias"),
                      Rename("heads.mlm.bias", "generator_lm_head.bias")]
            if not tied:
                rules.append(Rename("heads.mlm.decoder.weight", "generator_lm_head.weight"))
        else:
            d = "discriminator_predictions."
            for x in ("dense", "dense_prediction"):
                rules += [Rename(f"heads.rtd.{x}.weight", d + f"{x}.weight"),
                          Rename(f"heads.rtd.{x}.bias", d + f"{x}.bias")]
        return rules

    def detect(self, ir):
        heads = head_kinds(ir)
        if ir.decoder is not None or first_layer(ir, "encoder") is None:
            return None
        if "rtd" in heads:
            return "ElectraForPreTraining"
        if "mlm" in heads and ir.embedding.size != ir.d_model and ir.embedding.token_types:
            return "ElectraForMaskedLM" if ir.encoder.layers[-1].shares is None else None
        return None

    def hf_config(self, ir, arch):
        kw = encoder_config(ir)
        mlm = head_kinds(ir).get("mlm")
        kw.update(embedding_size=ir.embedding.size,
                  max_position_embeddings=ir.embedding.position.args["max_len"],
                  tie_word_embeddings=bool(mlm is not None and mlm.args.get("tied")))
        return kw
