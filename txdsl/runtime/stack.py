"""A stack of layers (encoder or decoder) sharing one position scheme.

Per forward it builds what every layer's attention receives: the
:class:`AttentionMask` (causal flag, key padding over all keys, cached ones
first) and the :class:`PositionContext` (this step's and all keys' absolute
positions, and a score bias computed once, which T5 shares across layers).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..sdk.attention import AttentionMask, PositionContext
from .cache import StackCache
from .layer import Layer


class Stack(nn.Module):
    def __init__(self, *, role: str, causal: bool, layers: list[Layer],
                 position: nn.Module | None = None, position_acts: str | None = None,
                 final_norm: nn.Module | None = None):
        super().__init__()
        self.role, self.causal = role, causal
        self.layers = nn.ModuleList(layers)  # a shared layer appears at several indices
        self.position = position
        self.position_acts = position_acts
        self.final_norm = final_norm

    def forward(self, x: Tensor, *, attention_mask: Tensor | None = None,
                memory: Tensor | None = None, memory_mask: Tensor | None = None,
                cache: StackCache | None = None,
                output_hidden_states: bool = False) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """``x`` ``(B, T, d_model)``; ``attention_mask`` ``(B, past + T)``, 1 for real tokens;
        ``memory_mask`` ``(B, S)`` the encoder's. Returns the output and, on request, the
        input of every layer followed by the output (after the final norm)."""
        T = x.shape[1]
        past = cache.length if cache is not None else 0
        S = past + T
        key_padding = None
        if attention_mask is not None:
            if attention_mask.shape[-1] != S:
                raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} positions, "
                                 f"expected past ({past}) + new ({T}) = {S}")
            key_padding = attention_mask.bool()  # (B, S)
        mask = AttentionMask(causal=self.causal, key_padding=key_padding)
        cross_mask = AttentionMask(key_padding=memory_mask.bool() if memory_mask is not None else None)

        position = None
        if self.position is not None:
            q_positions = torch.arange(past, S, device=x.device)  # (T,)
            k_positions = torch.arange(S, device=x.device)  # (S,)
            bias = (self.position.bias(q_positions, k_positions)  # (1|B, H, T, S)
                    if self.position_acts == "bias" else None)
            position = PositionContext(self.position, q_positions, k_positions, bias)

        hidden: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                hidden.append(x)
            x = layer(x, mask=mask, position=position, memory=memory, memory_mask=cross_mask,
                      cache=cache.self_attention[i] if cache is not None else None,
                      cross_cache=(cache.cross_attention[i]
                                   if cache is not None and cache.cross_attention is not None
                                   else None))
        if self.final_norm is not None:
            x = self.final_norm(x)
        if output_hidden_states:
            hidden.append(x)
            return x, tuple(hidden)
        return x, None
