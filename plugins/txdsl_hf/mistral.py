"""Mistral (Jiang et al. 2023, https://arxiv.org/abs/2310.06825): ``MistralForCausalLM``
<-> ``specs/llama.tx`` with a sliding window.

Mistral is LLaMA's layout (the same keys, RoPE in ``rotate_half`` form, RMSNorm, SwiGLU,
grouped-query attention, no biases) with sliding-window attention: a query sees the
``sliding_window`` most recent positions, itself included, which is txdsl's causal
``local(window: sliding_window)``. A config without a window (``sliding_window: null``,
or one covering the whole context) is full attention.
"""

from __future__ import annotations

from txdsl.interop.family import first_layer

from .llama import LLaMA, llama_layout


def window(c) -> int | None:
    """The sliding window that restricts anything, else ``None``."""
    w = getattr(c, "sliding_window", None)
    return w if w is not None and w < c.max_position_embeddings else None


class Mistral(LLaMA):
    model_type = "mistral"
    zoo = "llama.tx"
    architectures = {"MistralForCausalLM": "llama"}

    def params(self, c, arch):
        return {**super().params(c, arch), **({"window": window(c)} if window(c) else {})}

    def body(self, c, arch, tied):
        lines = super().body(c, arch, tied)
        if window(c):  # after LLaMA's head_dim edit, which then edits the window's attention
            lines.insert(0, "decoder { attention = local(heads: heads, kv_heads: kv_heads, "
                            "bias: false, window: window) }")
        return lines

    def detect(self, ir):
        if not llama_layout(ir):
            return None
        first = first_layer(ir).attention
        if first.kind == "local" and not first.args.get("ring") and all(
                layer.attention.kind == "local" and layer.attention.args == first.args
                for layer in ir.decoder.layers):  # one window in every layer
            return "MistralForCausalLM"
        return None

    def hf_config(self, ir, arch):
        return {**super().hf_config(ir, arch),
                "sliding_window": first_layer(ir).attention.args["window"]}
