"""Memory tokens (the Memory Transformer, Burtsev, Kuratov, Peganov & Sapunov 2020,
https://arxiv.org/abs/2006.11527): ``N`` learned vectors prepended to a stack's input.

Three forms (``memory_form``):

- ``prepend`` (MemTransformer): ``[mem; x]`` runs through the layers as one sequence;
- ``bottleneck`` (MemBottleneck): a mask lets the memory see everything and the
  sequence see only the memory, so sequence tokens reach each other only through it
  (bidirectional stacks: under a causal mask the memory, placed first, sees nothing
  of the sequence);
- ``dedicated`` (MemCtrl): every layer has a twin with its own parameters that
  computes the memory's new state; the layer itself computes the sequence's. Both
  attend over ``[mem; x]``.

Positions: the memory takes 0..N-1 and the sequence's shift by N (the stack's own
position scheme; an embedding position was added before). The key padding gains N
real columns. The stack strips the memory from its output, so heads and losses never
see it; ``memory_tokens = 0`` is the plain stack. Not with a decode cache (yet).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MemoryTokens(nn.Module):
    def __init__(self, *, size: int, d_model: int, form: str = "prepend",
                 memory_layers: list[nn.Module] | None = None):
        super().__init__()
        if form not in ("prepend", "bottleneck", "dedicated"):
            raise ValueError(f"memory_form must be prepend, bottleneck or dedicated, not {form!r}")
        self.size, self.form = size, form
        self.memory = nn.Parameter(torch.randn(size, d_model) * 0.02)  # (N, d)
        # dedicated: one memory-update layer per layer (a shared layer appears twice)
        self.memory_layers = nn.ModuleList(memory_layers) if memory_layers else None

    def prepend(self, x: Tensor, positions: Tensor | None,
                attention_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``x`` ``(B, T, d)`` -> ``(B, N + T, d)``, with the positions ``(B|1, N + T)`` and
        the key padding ``(B, N + T)`` (``None`` stays ``None``) to match."""
        B, T, _ = x.shape
        N = self.size
        x = torch.cat([self.memory.to(x.dtype).expand(B, -1, -1), x], dim=1)
        if positions is None:
            positions = torch.arange(T, device=x.device)[None]
        mem_pos = torch.arange(N, device=x.device, dtype=positions.dtype)
        positions = torch.cat([mem_pos[None].expand(positions.shape[0], -1), positions + N], 1)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(B, N), attention_mask[:, -T:]], 1)
        return x, positions, attention_mask

    def bottleneck(self):
        """The MemBottleneck pattern ``(b, h, q, kv) -> bool``: memory queries see all keys,
        the others only the memory (a closure over an int: it traces in one graph)."""
        size = self.size

        def pattern(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            return (q < size) | (kv < size)

        return pattern

    def step(self, i: int, layer: nn.Module, x: Tensor, **kw) -> Tensor:
        """Layer ``i`` on ``[mem; x]`` ``(B, N + T, d)``; ``dedicated``: the memory's new
        state from its own layer."""
        out = layer(x, **kw)
        if self.memory_layers is None:
            return out
        mem = self.memory_layers[i](x, **kw)[:, :self.size]  # (B, N, d)
        return torch.cat([mem, out[:, self.size:]], dim=1)

    def extra_repr(self) -> str:
        return f"size={self.size}, form={self.form}"
