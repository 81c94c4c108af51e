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
see it; ``memory_tokens = 0`` is the plain stack.

Decoding (causal stacks: ``prepend`` and ``dedicated``). Placed first under a causal
mask, the memory sees only itself: its state in every layer is the same for every
input. The decode cache reserves slots 0..N-1 for it
(:class:`~txdsl.runtime.cache.StackCache` ``reserved``); the first call (the
prefill) runs ``[mem; x]`` and writes the memory's keys there and the sequence's at
``N + cache_position``; later calls run only their tokens, at ``N + cache_position``
with positions shifted by N, reading the memory's keys from the cache. ``dedicated``:
at the prefill each memory-update layer runs on the memory alone (causal: its rows
are the same as over ``[mem; x]``); later calls don't run it (the memory's next
states are already cached as keys of the next layers).

Packed documents (``document_ids``, causal stacks): every document sees the memory
(a mask pattern: memory keys, or keys of the query's own document), the memory sees
itself; each document computes what it would alone after ``[mem; ...]``. A
bidirectional stack refuses them (the memory would carry one document to another).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..sdk.mask import AttentionMask
from ..sdk.positions import PositionContext


@dataclass(eq=False)
class MemoryPass:
    """How one stack forward runs the memory.

    ``prepended``: ``[mem; x]`` runs (else the memory is in the cache); ``twins``:
    ``"all"`` the memory-update layers run on ``[mem; x]`` with the stack's mask,
    ``"alone"`` on the memory alone (the cached prefill), ``"skip"`` not at all;
    ``documents`` ``(B, N + T)`` the packed documents' ids (the memory's ``-1``);
    ``alone`` the mask and position context of the memory alone (set by the stack).
    """

    prepended: bool
    twins: str = "all"
    documents: Tensor | None = None
    alone_mask: AttentionMask | None = None
    alone_position: PositionContext | None = None


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

    def enter(self, x: Tensor, positions: Tensor, attention_mask: Tensor | None,
              cache: Any, cache_position: Tensor | None, documents: Tensor | None, *,
              causal: bool):
        """The stack's inputs with the memory: ``(x, positions, attention_mask,
        cache_position, documents, MemoryPass)``; ``cache_position`` becomes the
        physical slots (after the memory's), ``documents`` moves into a pattern."""
        N = self.size
        if documents is not None and not causal:
            raise ValueError("document_ids (packed sequences) with memory tokens need a causal "
                             "stack: in a bidirectional one the memory sees every document and "
                             "would carry one to another; run the documents as separate rows")
        if cache is not None and not causal:
            raise ValueError("memory tokens decode with a cache only in a causal stack (in a "
                             "bidirectional one the memory's state depends on every token)")
        if cache is not None and cache.memory_written:  # a decode step: the memory is cached
            return (x, positions + N, attention_mask, cache_position + N, None,
                    MemoryPass(prepended=False, twins="skip"))
        B = x.shape[0]
        x, positions, attention_mask = self.prepend(x, positions, attention_mask)
        run = MemoryPass(prepended=True, twins="all" if cache is None else "alone")
        if documents is not None:  # the memory: no document of its own (-1), seen by all
            run.documents = torch.cat([documents.new_full((B, N), -1), documents], 1)
        if cache is not None:  # the prefill writes the memory's slots too
            slots = torch.arange(N, device=x.device, dtype=cache_position.dtype)
            cache_position = torch.cat([slots, cache_position + N])
            cache.memory_written = True
        return x, positions, attention_mask, cache_position, None, run

    def restrict(self, mask: AttentionMask, run: MemoryPass) -> AttentionMask:
        """The stack's mask with the bottleneck pattern, or the documents' one."""
        if self.form == "bottleneck":
            mask = mask.with_pattern(("memory_bottleneck", self.size), self.bottleneck())
        if run.documents is not None:
            size, docs = self.size, run.documents  # (B, N + T)

            def documents(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
                return (kv < size) | (docs[b, q] == docs[b, kv])

            mask = mask.with_pattern(("memory_documents", size), documents)
        return mask

    def bottleneck(self):
        """The MemBottleneck pattern ``(b, h, q, kv) -> bool``: memory queries see all keys,
        the others only the memory (a closure over an int: it traces in one graph)."""
        size = self.size

        def pattern(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            return (q < size) | (kv < size)

        return pattern

    def step(self, i: int, layer: nn.Module, x: Tensor, run: MemoryPass, **kw) -> Tensor:
        """Layer ``i`` on ``[mem; x]`` ``(B, N + T, d)`` (a decode step: on ``x``);
        ``dedicated``: the memory's new state from its own layer."""
        out = layer(x, **kw)
        if self.memory_layers is None or run.twins == "skip":
            return out
        if run.twins == "alone":  # the cached prefill: the memory sees only itself
            alone = dict(kw, mask=run.alone_mask, position=run.alone_position, cache=None,
                         cross_cache=None)
            mem = self.memory_layers[i](x[:, :self.size], **alone)  # (B, N, d)
        else:
            mem = self.memory_layers[i](x, **kw)[:, :self.size]  # (B, N, d)
        return torch.cat([mem, out[:, self.size:]], dim=1)

    def extra_repr(self) -> str:
        return f"size={self.size}, form={self.form}"
