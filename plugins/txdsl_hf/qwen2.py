"""Qwen2 (Yang et al. 2024, https://arxiv.org/abs/2407.10671): ``Qwen2ForCausalLM`` <->
``specs/llama.tx`` with biases on the q, k and v projections.

Qwen2 is LLaMA's layout (the same keys, RoPE in ``rotate_half`` form, RMSNorm, SwiGLU,
grouped-query attention) plus a bias on each of q, k and v, none on the output
projection: txdsl's ``full(bias: true, out_bias: false)``. Its optional sliding window
(``use_sliding_window``, on the layers from ``max_window_layers`` up) isn't converted.
"""

from __future__ import annotations

from txdsl.interop import Rename
from txdsl.interop.family import refuse

from .llama import H, L, LLaMA, llama_layout


class Qwen2(LLaMA):
    model_type = "qwen2"
    zoo = "llama.tx"
    architectures = {"Qwen2ForCausalLM": "llama"}

    def params(self, c, arch):
        refuse(c, use_sliding_window=False)
        if any(t != "full_attention" for t in (getattr(c, "layer_types", None) or [])):
            from txdsl.interop import MappingError

            raise MappingError(f"Qwen2Config: layer_types {c.layer_types} has sliding-window "
                               "layers, which this mapping doesn't convert (supported: every "
                               "layer full_attention)")
        return super().params(c, arch)

    def body(self, c, arch, tied):
        return ["decoder { attention.bias = true; attention.out_bias = false }",
                *super().body(c, arch, tied)]

    def rules(self, c, arch, tied):
        return super().rules(c, arch, tied) + [
            Rename(L + f"attention.{x}_proj.bias", H + f"self_attn.{x}_proj.bias") for x in "qkv"]

    def detect(self, ir):
        if llama_layout(ir) and all(
                layer.attention.kind == "full" and layer.attention.args.get("bias")
                and layer.attention.args.get("out_bias") is False for layer in ir.decoder.layers):
            return "Qwen2ForCausalLM"
        return None
