"""ViT (Dosovitskiy et al. 2021): ``ViTForImageClassification`` <-> ``specs/vit.tx``.

HF keeps position embeddings as ``(1, N, d)`` (``unbatch``); the [CLS] vector
and the convolutional patch projection keep their shapes. The rules use the
checkpoint's names (``vit.encoder.layer.{i}.attention.attention.query``, as
``save_pretrained`` writes and published checkpoints have); an instantiated
transformers 5 model names them ``vit.layers.{i}.attention.q_proj``
(``in_memory`` renames those).
"""

from __future__ import annotations

from txdsl.interop import HFFamily, Rename
from txdsl.interop.family import HF_ACTIVATIONS, first_layer, head_kinds, refuse, txdsl_act

L, H = "encoder.layers.{i}.", "vit.encoder.layer.{i}."
N = r"vit\.layers\.(\d+)\."
E = r"vit.encoder.layer.\1."


class ViT(HFFamily):
    model_type = "vit"
    zoo = "vit.tx"
    architectures = {"ViTForImageClassification": "vit_classifier"}
    ignore = ()
    in_memory = ((N + r"attention\.q_proj", E + "attention.attention.query"),
                 (N + r"attention\.k_proj", E + "attention.attention.key"),
                 (N + r"attention\.v_proj", E + "attention.attention.value"),
                 (N + r"attention\.o_proj", E + "attention.output.dense"),
                 (N + r"mlp\.fc1", E + "intermediate.dense"),
                 (N + r"mlp\.fc2", E + "output.dense"),
                 (N + r"layernorm_", E + "layernorm_"))

    def params(self, c, arch):
        refuse(c, qkv_bias=True)
        return dict(d_model=c.hidden_size, heads=c.num_attention_heads,
                    layers=c.num_hidden_layers, image=c.image_size, patch=c.patch_size,
                    d_ff=c.intermediate_size, eps=c.layer_norm_eps, classes=c.num_labels)

    def body(self, c, arch, tied):
        act = txdsl_act(c.hidden_act, "hidden_act")
        lines = [f"embedding {{ patches.channels = {c.num_channels} }}"]
        if act != "gelu":
            lines.append(f"encoder {{ ffn.act = {act} }}")
        return lines

    def rules(self, c, arch, tied):
        rules = [Rename("embedding.cls_token", "vit.embeddings.cls_token"),
                 Rename("embedding.position.embed.weight", "vit.embeddings.position_embeddings",
                        unbatch=True),
                 Rename("heads.classifier.out.weight", "classifier.weight"),
                 Rename("heads.classifier.out.bias", "classifier.bias")]
        for p in ("weight", "bias"):
            rules += [Rename(f"embedding.patches.projection.{p}",
                             f"vit.embeddings.patch_embeddings.projection.{p}"),
                      Rename(f"encoder.final_norm.{p}", f"vit.layernorm.{p}")]
            for ours, theirs in (("q_proj", "attention.query"), ("k_proj", "attention.key"),
                                 ("v_proj", "attention.value"), ("out_proj", "output.dense")):
                rules.append(Rename(L + f"attention.{ours}.{p}", H + f"attention.{theirs}.{p}"))
            rules += [Rename(L + f"attention_norm.{p}", H + f"layernorm_before.{p}"),
                      Rename(L + f"ffn_norm.{p}", H + f"layernorm_after.{p}"),
                      Rename(L + f"ffn.up.{p}", H + f"intermediate.dense.{p}"),
                      Rename(L + f"ffn.down.{p}", H + f"output.dense.{p}")]
        return rules

    def detect(self, ir):
        if ir.embedding.patches is not None and "classifier" in head_kinds(ir):
            return "ViTForImageClassification"
        return None

    def hf_config(self, ir, arch):
        layer = first_layer(ir, "encoder")
        patches = ir.embedding.patches.args
        return dict(hidden_size=ir.d_model, num_attention_heads=layer.attention.args["heads"],
                    num_hidden_layers=len(ir.encoder.layers),
                    intermediate_size=layer.ffn.args["hidden"],
                    hidden_act=HF_ACTIVATIONS[layer.ffn.args["act"]],
                    layer_norm_eps=layer.norm.args["eps"], image_size=patches["image"],
                    patch_size=patches["size"],
                    num_channels=patches["channels"],
                    num_labels=head_kinds(ir)["classifier"].args["classes"],
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
