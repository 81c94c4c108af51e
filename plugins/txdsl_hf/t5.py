"""T5 (Raffel et al. 2020), v1.0 and v1.1: ``T5ForConditionalGeneration`` <-> ``specs/t5.tx``.

Blocks hold numbered sublayers (encoder: ``layer.0`` self-attention,
``layer.1`` feed-forward; decoder: ``layer.0`` self, ``layer.1`` cross,
``layer.2`` feed-forward); the relative position bias lives in block 0 only,
and is txdsl's per-stack ``position``. One embedding (``shared``) serves
both stacks. v1.1's gated GELU: ``wi_0`` is the gate, ``wi_1`` the up
projection. v1.0's tied head scales the decoder output by ``d_model ** -0.5``
(HF's ``scale_decoder_outputs``): that needs the ``lm`` head's scale argument.
"""

from __future__ import annotations

from txdsl.interop import HFFamily, MappingError, Rename
from txdsl.interop.family import first_layer, head_kinds


class T5(HFFamily):
    model_type = "t5"
    zoo = "t5.tx"
    architectures = {"T5ForConditionalGeneration": "t5_small"}
    ignore = (r"(encoder|decoder)\.embed_tokens\.weight",)
    tie = ("lm_head.weight", "shared.weight")

    def gated(self, c) -> bool:
        if c.feed_forward_proj not in ("relu", "gated-gelu"):
            raise MappingError(f"T5Config.feed_forward_proj = '{c.feed_forward_proj}' has no "
                               "txdsl mapping yet (supported: relu, gated-gelu)")
        return c.feed_forward_proj == "gated-gelu"

    def spec(self, c, arch, tied, name):
        if arch in self.architectures and self.gated(c):
            text = super().spec(c, arch, tied, name)
            return text.replace("extends t5_small", "extends t5_v1_1_small")
        return super().spec(c, arch, tied, name)

    def params(self, c, arch):
        if c.num_decoder_layers != c.num_layers:
            raise MappingError(f"T5Config: num_decoder_layers ({c.num_decoder_layers}) != "
                               f"num_layers ({c.num_layers}) is not supported yet")
        return dict(vocab=c.vocab_size, d_model=c.d_model, heads=c.num_heads,
                    layers=c.num_layers, d_ff=c.d_ff, head_dim=c.d_kv,
                    buckets=c.relative_attention_num_buckets,
                    max_distance=c.relative_attention_max_distance,
                    eps=c.layer_norm_epsilon, drop=c.dropout_rate)

    def body(self, c, arch, tied):
        scaled = bool(getattr(c, "scale_decoder_outputs", tied))
        if not scaled:
            return [f"head = lm(tied: {'true' if tied else 'false'})"]
        # T5 v1.0 (HF's scale_decoder_outputs) scales the decoder output before a tied head
        return [f"head = lm(tied: {'true' if tied else 'false'}, scale: d_model ** -0.5)"]

    def counts(self, c):
        return {"i": c.num_layers}

    def rules(self, c, arch, tied):
        ffn = ({"gate": "wi_0", "up": "wi_1", "down": "wo"} if self.gated(c)
               else {"up": "wi", "down": "wo"})
        rules = [Rename("embedding.tokens.weight", "shared.weight")]
        for stack in ("encoder", "decoder"):
            L, H = f"{stack}.layers.{{i}}.", f"{stack}.block.{{i}}.layer."
            subs = [("attention", "0.SelfAttention")]
            if stack == "decoder":
                subs.append(("cross_attention", "1.EncDecAttention"))
            n_ffn = len(subs)
            for ours, theirs in subs:
                rules.append(Rename(L + f"{ours}_norm.weight",
                                    H + f"{theirs[0]}.layer_norm.weight"))
                for x, y in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o")):
                    rules.append(Rename(L + f"{ours}.{x}.weight", H + f"{theirs}.{y}.weight"))
            rules.append(Rename(L + "ffn_norm.weight", H + f"{n_ffn}.layer_norm.weight"))
            for ours, theirs in ffn.items():
                rules.append(Rename(L + f"ffn.{ours}.weight",
                                    H + f"{n_ffn}.DenseReluDense.{theirs}.weight"))
            bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
            rules += [Rename(f"{stack}.position.relative_attention_bias.weight", bias),
                      Rename(f"{stack}.final_norm.weight", f"{stack}.final_layer_norm.weight")]
        return rules + ([] if tied else [Rename("heads.lm.weight", "lm_head.weight")])

    def detect(self, ir):
        pos = ir.encoder.position if ir.encoder is not None else None
        if ir.decoder is not None and pos is not None and pos.kind == "t5_bias":
            return "T5ForConditionalGeneration"
        return None

    def hf_config(self, ir, arch):
        layer = first_layer(ir, "encoder")
        att, ffn, pos = layer.attention.args, layer.ffn, ir.encoder.position.args
        lm = head_kinds(ir)["lm"].args
        return dict(vocab_size=ir.embedding.tokens, d_model=ir.d_model, num_heads=att["heads"],
                    d_kv=att.get("head_dim") or ir.d_model // att["heads"],
                    d_ff=ffn.args["hidden"], num_layers=len(ir.encoder.layers),
                    num_decoder_layers=len(ir.decoder.layers),
                    feed_forward_proj="gated-gelu" if ffn.kind == "geglu" else "relu",
                    relative_attention_num_buckets=pos["buckets"],
                    relative_attention_max_distance=pos["max_distance"],
                    layer_norm_epsilon=layer.norm.args["eps"], dropout_rate=layer.dropout,
                    tie_word_embeddings=bool(lm.get("tied")),
                    scale_decoder_outputs=lm.get("scale", 1.0) != 1.0,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
