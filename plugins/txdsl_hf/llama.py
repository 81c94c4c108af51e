"""LLaMA (Touvron et al. 2023): ``LlamaForCausalLM`` <-> ``specs/llama.tx``.

Separate q/k/v projections whose sizes follow the grouped-query head counts
(``num_key_value_heads``); RoPE in HF's ``rotate_half`` layout, which is
txdsl's ``rope`` (no permutation of q/k rows, unlike Meta's original files).
"""

from __future__ import annotations

from txdsl.interop import HFFamily, Rename
from txdsl.interop.family import first_layer, head_kinds, refuse

from .rope import hf_rope_parameters, rope_args

L, H = "decoder.layers.{i}.", "model.layers.{i}."


def llama_layout(ir) -> bool:
    """A decoder-only model with RoPE on the stack, RMSNorm and SwiGLU in every layer
    (LLaMA's, Mistral's); a layer with its own position scheme (``layer[3] { position =
    none }``) doesn't fit: HF rotates every layer with the one RoPE."""
    layer = first_layer(ir)
    return (ir.encoder is None and layer is not None and ir.decoder.position is not None
            and ir.decoder.position.kind == "rope"
            and all(x.norm.kind == "rmsnorm" and x.ffn is not None and x.ffn.kind == "swiglu"
                    and x.residual == "pre" and x.position is None and not x.no_position
                    for x in ir.decoder.layers))


class LLaMA(HFFamily):
    model_type = "llama"
    zoo = "llama.tx"
    architectures = {"LlamaForCausalLM": "llama"}
    ignore = (r".*rotary_emb\.inv_freq",)
    tie = ("lm_head.weight", "model.embed_tokens.weight")

    def params(self, c, arch):
        refuse(c, attention_bias=False, mlp_bias=False, hidden_act="silu", pretraining_tp=1)
        kv = c.num_key_value_heads or c.num_attention_heads
        return dict(vocab=c.vocab_size, d_model=c.hidden_size, heads=c.num_attention_heads,
                    kv_heads=kv, layers=c.num_hidden_layers, d_ff=c.intermediate_size,
                    context=c.max_position_embeddings, eps=c.rms_norm_eps,
                    theta=rope_args(c, type(c).__name__)[0])

    def body(self, c, arch, tied):
        lines = []
        scaling = rope_args(c, type(c).__name__)[1]
        if scaling:  # llama.tx's rope(theta: theta), with the checkpoint's context extension
            lines.append(f"decoder {{ position = rope(theta: theta, {scaling}) }}")
        head_dim = getattr(c, "head_dim", None)  # Qwen2's config may not have one
        if head_dim and head_dim != c.hidden_size // c.num_attention_heads:
            lines.append(f"decoder {{ attention.head_dim = {head_dim} }}")
        return lines + (["head = lm(tied: true)"] if tied else [])

    def rules(self, c, arch, tied):
        rules = [Rename("embedding.tokens.weight", "model.embed_tokens.weight"),
                 Rename("decoder.final_norm.weight", "model.norm.weight")]
        for x in "qkv":
            rules.append(Rename(L + f"attention.{x}_proj.weight", H + f"self_attn.{x}_proj.weight"))
        rules += [Rename(L + "attention.out_proj.weight", H + "self_attn.o_proj.weight"),
                  Rename(L + "attention_norm.weight", H + "input_layernorm.weight"),
                  Rename(L + "ffn_norm.weight", H + "post_attention_layernorm.weight"),
                  Rename(L + "ffn.gate.weight", H + "mlp.gate_proj.weight"),
                  Rename(L + "ffn.up.weight", H + "mlp.up_proj.weight"),
                  Rename(L + "ffn.down.weight", H + "mlp.down_proj.weight")]
        return rules + ([] if tied else [Rename("heads.lm.weight", "lm_head.weight")])

    def detect(self, ir):
        if llama_layout(ir) and all(layer.attention.kind == "full"
                                    and not layer.attention.args.get("bias")
                                    and not layer.attention.args.get("out_bias")
                                    for layer in ir.decoder.layers):  # biases: Qwen2's
            return "LlamaForCausalLM"
        return None

    def hf_config(self, ir, arch):
        layer = first_layer(ir)
        att = layer.attention.args
        return dict(vocab_size=ir.embedding.tokens, hidden_size=ir.d_model,
                    num_attention_heads=att["heads"],
                    num_key_value_heads=att.get("kv_heads") or att["heads"],
                    head_dim=att.get("head_dim") or ir.d_model // att["heads"],
                    num_hidden_layers=len(ir.decoder.layers),
                    intermediate_size=layer.ffn.args["hidden"],
                    rms_norm_eps=layer.norm.args["eps"],
                    max_position_embeddings=ir.params.get("context", 2048),
                    rope_parameters=hf_rope_parameters(ir.decoder.position,
                                                       ir.params.get("context"), ir.name),
                    tie_word_embeddings=bool(head_kinds(ir)["lm"].args.get("tied")))
