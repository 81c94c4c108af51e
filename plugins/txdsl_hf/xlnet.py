"""XLNet (Yang et al. 2019, https://arxiv.org/abs/1906.08237): ``XLNetLMHeadModel`` <->
``specs/xlnet.tx``, and ``XLNetModel`` (the same without a head: ``head = none``).

HF's ``XLNetRelativeAttention`` keeps q, k, v, o and r as ``(d_model, heads,
head_dim)`` einsum tensors: txdsl's q/k/v/r projections are them flattened
and transposed (``(heads * head_dim, d_model)``), its output projection is
``o`` flattened (``(d_model, heads * head_dim)``). The per-head biases and
``seg_embed`` are copied as they are; ``rel_attn.layer_norm`` is the layer's
``attention_norm`` (post-LN), ``ff.layer_norm`` its ``ffn_norm``;
``mask_emb`` (the query stream's start) belongs to the ``relative_xl``
position. The LM head (``lm_loss``) is tied to the word embedding, with a bias.
"""

from __future__ import annotations

from txdsl.interop import HFFamily, Rename
from txdsl.interop.family import HF_ACTIVATIONS, first_layer, head_kinds, refuse, txdsl_act

L, H = "decoder.layers.{i}.", "transformer.layer.{i}."


class XLNet(HFFamily):
    model_type = "xlnet"
    zoo = "xlnet.tx"
    architectures = {"XLNetLMHeadModel": "xlnet", "XLNetModel": "xlnet"}
    bare = {"XLNetModel": "transformer."}
    tie = ("lm_loss.weight", "transformer.word_embedding.weight")

    def params(self, c, arch):
        refuse(c, attn_type="bi", bi_data=False, clamp_len=-1, same_length=False)
        return dict(vocab=c.vocab_size, d_model=c.d_model, heads=c.n_head, layers=c.n_layer,
                    d_ff=c.d_inner, eps=c.layer_norm_eps, drop=c.dropout)

    def body(self, c, arch, tied):
        act = txdsl_act(c.ff_activation, "XLNetConfig.ff_activation")
        overrides = [f"attention.mem_len = {c.mem_len or 0}"]
        if act != "gelu":
            overrides.append(f"ffn.act = {act}")
        lines = [f"decoder {{ {'; '.join(overrides)} }}"]
        if arch == "XLNetModel":
            return lines + ["head = none"]
        return lines + ([] if tied else ["head = lm(tied: false, bias: true)"])

    def counts(self, c):
        return {"i": c.n_layer}

    def rules(self, c, arch, tied):
        A = H + "rel_attn."
        rules = [Rename("embedding.tokens.weight", "transformer.word_embedding.weight"),
                 Rename("decoder.position.mask_emb", "transformer.mask_emb")]
        for ours, theirs in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("r_net", "r")):
            rules.append(Rename(L + f"attention.{ours}.weight", A + theirs, transpose=True,
                                heads=c.n_head))
        rules.append(Rename(L + "attention.out_proj.weight", A + "o", heads=c.n_head))
        rules += [Rename(L + f"attention.{name}", A + name)
                  for name in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed")]
        for p in ("weight", "bias"):
            rules += [Rename(L + f"attention_norm.{p}", A + f"layer_norm.{p}"),
                      Rename(L + f"ffn.up.{p}", H + f"ff.layer_1.{p}"),
                      Rename(L + f"ffn.down.{p}", H + f"ff.layer_2.{p}"),
                      Rename(L + f"ffn_norm.{p}", H + f"ff.layer_norm.{p}")]
        if arch == "XLNetModel":
            return rules
        rules.append(Rename("heads.lm.bias", "lm_loss.bias"))
        return rules + ([] if tied else [Rename("heads.lm.weight", "lm_loss.weight")])

    def detect(self, ir):
        layer, heads = first_layer(ir), head_kinds(ir)
        if (ir.encoder is None and layer is not None and layer.attention.kind == "two_stream"
                and ir.decoder.position is not None
                and ir.decoder.position.kind == "relative_xl"):
            if not heads:
                return "XLNetModel"
            return "XLNetLMHeadModel" if set(heads) == {"lm"} else None
        return None

    def hf_config(self, ir, arch):
        layer = first_layer(ir)
        att = layer.attention.args
        return dict(vocab_size=ir.embedding.tokens, d_model=ir.d_model, n_head=att["heads"],
                    n_layer=len(ir.decoder.layers), d_inner=layer.ffn.args["hidden"],
                    ff_activation=HF_ACTIVATIONS[layer.ffn.args["act"]],
                    layer_norm_eps=layer.norm.args["eps"], dropout=layer.dropout,
                    mem_len=att.get("mem_len") or None,
                    tie_word_embeddings=arch == "XLNetModel"
                    or bool(head_kinds(ir)["lm"].args.get("tied")))
