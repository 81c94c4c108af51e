"""GPT-2 (Radford et al. 2019): ``GPT2LMHeadModel`` <-> ``specs/gpt2.tx``.

HF's ``Conv1D`` stores weights ``(in, out)``: every projection is transposed,
and ``c_attn`` holds q, k and v side by side (one fused tensor, split in
three). The LM head is tied to ``wte`` unless the checkpoint says otherwise.
"""

from __future__ import annotations

from txdsl.interop import Fused, HFFamily, Rename
from txdsl.interop.family import HF_ACTIVATIONS, first_layer, head_kinds, refuse, txdsl_act

L, H = "decoder.layers.{i}.", "transformer.h.{i}."


class GPT2(HFFamily):
    model_type = "gpt2"
    zoo = "gpt2.tx"
    architectures = {"GPT2LMHeadModel": "gpt2"}
    ignore = (r"transformer\.h\.\d+\.attn\.(bias|masked_bias)",)
    tie = ("lm_head.weight", "transformer.wte.weight")

    def params(self, c, arch):
        refuse(c, scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
               add_cross_attention=False, scale_attn_weights=True)
        return dict(vocab=c.vocab_size, d_model=c.n_embd, heads=c.n_head, layers=c.n_layer,
                    context=c.n_positions, d_ff=c.n_inner or 4 * c.n_embd,
                    eps=c.layer_norm_epsilon, drop=c.resid_pdrop)

    def body(self, c, arch, tied):
        act = txdsl_act(c.activation_function, "GPT2Config.activation_function")
        lines = [] if act == "gelu_tanh" else [f"decoder {{ ffn.act = {act} }}"]
        return lines + ([] if tied else ["head = lm(tied: false)"])

    def counts(self, c):
        return {"i": c.n_layer}

    def rules(self, c, arch, tied):
        rules = [Rename("embedding.tokens.weight", "transformer.wte.weight"),
                 Rename("embedding.position.embed.weight", "transformer.wpe.weight"),
                 Rename("decoder.final_norm.weight", "transformer.ln_f.weight"),
                 Rename("decoder.final_norm.bias", "transformer.ln_f.bias")]
        for p in ("weight", "bias"):
            rules += [Rename(L + f"attention_norm.{p}", H + f"ln_1.{p}"),
                      Rename(L + f"ffn_norm.{p}", H + f"ln_2.{p}"),
                      Fused(tuple(L + f"attention.{x}_proj.{p}" for x in "qkv"),
                            H + f"attn.c_attn.{p}", transpose=p == "weight"),
                      Rename(L + f"attention.out_proj.{p}", H + f"attn.c_proj.{p}",
                             transpose=p == "weight"),
                      Rename(L + f"ffn.up.{p}", H + f"mlp.c_fc.{p}", transpose=p == "weight"),
                      Rename(L + f"ffn.down.{p}", H + f"mlp.c_proj.{p}", transpose=p == "weight")]
        return rules + ([] if tied else [Rename("heads.lm.weight", "lm_head.weight")])

    def detect(self, ir):
        layer, heads = first_layer(ir), head_kinds(ir)
        if (ir.encoder is None and layer is not None and ir.embedding.position is not None
                and ir.embedding.position.kind == "learned" and layer.norm.kind == "layernorm"
                and layer.ffn is not None and layer.ffn.kind == "mlp"
                and layer.residual == "pre" and "lm" in heads):
            return "GPT2LMHeadModel"
        return None

    def hf_config(self, ir, arch):
        layer = first_layer(ir)
        return dict(vocab_size=ir.embedding.tokens, n_embd=ir.d_model,
                    n_head=layer.attention.args["heads"], n_layer=len(ir.decoder.layers),
                    n_positions=ir.embedding.position.args["max_len"],
                    n_inner=layer.ffn.args["hidden"], layer_norm_epsilon=layer.norm.args["eps"],
                    activation_function=HF_ACTIVATIONS[layer.ffn.args["act"]],
                    resid_pdrop=layer.dropout, embd_pdrop=ir.embedding.dropout,
                    attn_pdrop=layer.attention.args.get("dropout", 0.0),
                    tie_word_embeddings=bool(head_kinds(ir)["lm"].args.get("tied")))
