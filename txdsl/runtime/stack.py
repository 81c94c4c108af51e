"""A stack of layers (encoder or decoder) sharing one position scheme (or a few).

Once per forward it builds what every layer's attention receives (the
attention contract, :mod:`txdsl.sdk.attention`):

- the :class:`~txdsl.sdk.mask.AttentionMask`: causal, key padding (over the
  cached keys too), the queries' slots, documents of packed rows; lowered at
  most once per form however many layers read it;
- the :class:`~txdsl.sdk.positions.PositionContext`: rotary tables or the
  score bias for this step's query positions and all key positions, once per
  distinct scheme (the stack's and those layers chose instead,
  ``layer[...] { position = scheme(...) }``);
- a fresh :class:`~txdsl.sdk.attention.StackState` for what layers pass on.

With ``halting`` (:class:`~txdsl.runtime.universal.AdaptiveComputationTime`) the
layers are the steps of adaptive computation time (the Universal Transformer):
the output is the halting-weighted sum of the steps' states.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..sdk.attention import StackState
from ..sdk.mask import AttentionMask
from ..sdk.positions import PositionContext
from .cache import StackCache
from .layer import Layer


class Stack(nn.Module):
    def __init__(self, *, role: str, causal: bool, layers: list[Layer],
                 position: nn.Module | None = None, final_norm: nn.Module | None = None,
                 halting: nn.Module | None = None, memory_tokens: nn.Module | None = None,
                 layer_positions: list[nn.Module] | None = None,
                 layer_position: list[int] | None = None):
        """``layer_positions``: the distinct schemes layers chose instead of ``position``;
        ``layer_position[i]``: layer ``i``'s (0: the stack's, k: ``layer_positions[k - 1]``)."""
        super().__init__()
        self.layer_positions = nn.ModuleList(layer_positions or [])
        self.layer_position = list(layer_position or [0] * len(layers))
        self.memory_tokens = memory_tokens  # MemoryTokens (memory_tokens.py), or None
        self.halting = halting  # adaptive computation time over the layers, or None
        self.role, self.causal = role, causal
        self.layers = nn.ModuleList(layers)  # a shared layer appears at several indices
        self.position = position
        self.final_norm = final_norm

    def new_cache(self, batch: int, capacity: int, *, cross: bool = False,
                  device=None, dtype: torch.dtype = torch.float32) -> StackCache:
        """A preallocated decode cache for ``batch`` rows and ``capacity`` positions (and the
        memory tokens' slots before them)."""
        reserved = self.memory_tokens.size if self.memory_tokens is not None else 0
        return StackCache([layer.attention for layer in self.layers], batch=batch,
                          capacity=capacity, cross=cross, device=device, dtype=dtype,
                          reserved=reserved)

    def forward(self, x: Tensor, *, positions: Tensor | None = None,
                attention_mask: Tensor | None = None,
                documents: Tensor | None = None, memory: Tensor | None = None,
                memory_mask: Tensor | None = None, cache: StackCache | None = None,
                cache_position: Tensor | None = None, output_hidden_states: bool = False,
                state: StackState | None = None) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """``x`` ``(B, T, d_model)``; ``positions`` ``(B|1, T)`` (default: the slots); ``attention_mask``
        ``(B, T)`` (or ``(B, past + T)``: its last ``T`` columns), 1 = real token;
        ``documents`` ``(B, T)`` ids of packed documents (no cache); ``memory_mask``
        ``(B, S)`` the encoder's; ``cache_position`` ``(T,)`` the slots to write
        (default: after what the cache holds); ``state``: this forward's
        :class:`StackState` (the model passes one holding its component inputs and
        reads the auxiliary losses back; default: a fresh one). Returns the output
        and, on request, every layer's input followed by the output (after the
        final norm)."""
        memory_tokens = self.memory_tokens
        T = x.shape[1]
        if cache is not None:  # the sequence's slots (memory tokens' come first)
            cache_position = cache_position if cache_position is not None else cache.slots(T)
        if positions is None:
            positions = (cache_position if cache_position is not None
                         else torch.arange(T, device=x.device))[None]  # (1, T)
        memory_state = None  # how this forward runs the memory tokens (MemoryPass)
        if memory_tokens is not None:
            x, positions, attention_mask, cache_position, documents, memory_state = \
                memory_tokens.enter(x, positions, attention_mask, cache, cache_position,
                                    documents, causal=self.causal)
        B, T = x.shape[:2]
        real = attention_mask[:, -T:].bool() if attention_mask is not None else None
        # Data-dependent checks only in eager mode on real tensors (not compiling, not meta).
        compiling = torch.compiler.is_compiling() or x.device.type == "meta"
        if cache is None:
            if real is not None and not compiling and bool(real.all()):
                real = None  # an all-ones mask (generate passes one) keeps SDPA's causal path
            mask = AttentionMask(causal=self.causal, key_padding=real, q_documents=documents,
                                 k_documents=documents)
            k_positions = positions
        else:
            slots = cache_position
            if not compiling and not cache.planned:
                cache.ensure(int(slots[-1]) + 1)
                cache.padded = cache.padded or (real is not None and not bool(real.all()))
            cache.write(slots, real if real is not None else
                        torch.ones(B, T, dtype=torch.bool, device=x.device), positions)
            # Unwritten slots are padding: causality hides them, unless the stack isn't causal.
            # A planned cache's padding was decided on the host: compiled steps trust it.
            hide = (compiling and not cache.planned) or cache.padded or not self.causal
            # A prefill filling a cache of exactly T slots from 0 is plain causal: SDPA's
            # is_causal path (generate prefills so; eager only, the check reads the slots).
            plain = (not hide and not compiling and cache.capacity == T
                     and bool((slots == torch.arange(T, device=slots.device)).all()))
            mask = AttentionMask(causal=self.causal, q_slots=slots, q_from_zero=plain,
                                 key_padding=cache.key_padding if hide else None)
            k_positions = cache.key_positions
        if memory_tokens is not None:  # the bottleneck's pattern; documents see the memory
            mask = memory_tokens.restrict(mask, memory_state)
        cross_mask = AttentionMask(key_padding=memory_mask.bool() if memory_mask is not None
                                   else None, cross=True)
        contexts = self._contexts(positions, k_positions, x.dtype)  # one per distinct scheme
        contexts = self._per_layer(contexts)
        alone: list = []
        if memory_state is not None and memory_state.twins == "alone":
            N = memory_tokens.size  # the memory alone: causal over its own N positions
            memory_state.alone_mask = AttentionMask(causal=True)
            alone = self._per_layer(self._contexts(positions[:, :N], positions[:, :N], x.dtype))
        state = state if state is not None else StackState()
        if attention_mask is not None:  # this stack's step's real tokens, for components
            state.inputs = {**state.inputs, "attention_mask": attention_mask[:, -T:]}  # (B, T)
        open_streams = getattr(self.position, "open_streams", None)
        if open_streams is not None:  # XLNet: the query stream's positions follow x's
            x = open_streams(x, state)

        hidden: list[Tensor] = []

        def step(i: int, x: Tensor) -> Tensor:
            kw = dict(mask=mask, position=contexts[i], memory=memory,
                      memory_mask=cross_mask,
                      cache=cache.self_attention[i] if cache is not None else None,
                      cross_cache=(cache.cross_attention[i]
                                   if cache is not None and cache.cross_attention is not None
                                   else None), state=state)
            if memory_tokens is not None:
                if alone:
                    memory_state.alone_position = alone[i]
                return memory_tokens.step(i, self.layers[i], x, memory_state, **kw)
            return self.layers[i](x, **kw)

        if self.halting is not None:
            real_now = attention_mask[:, -T:].bool() if attention_mask is not None else None

            x = self.halting(x, len(self.layers), step, real=real_now, state=state,
                             hidden=hidden if output_hidden_states else None)
        for i in range(len(self.layers) if self.halting is None else 0):
            if output_hidden_states:
                hidden.append(x)
            x = step(i, x)
        if memory_state is not None and memory_state.prepended:  # heads, losses never see it
            x = x[:, memory_tokens.size:]
            hidden = [h[:, memory_tokens.size:] for h in hidden]
        if state.query_stream:  # the query stream is the output (as HF's XLNet)
            x = x[:, x.shape[1] - state.query_stream:]
        if self.final_norm is not None:
            x = self.final_norm(x)
        if output_hidden_states:
            hidden.append(x)
            return x, tuple(hidden)
        return x, None

    def _contexts(self, q_positions: Tensor, k_positions: Tensor,
                  dtype: torch.dtype) -> list[PositionContext | None]:
        """The stack's position context, then each layer-chosen scheme's, computed once."""
        schemes = [self.position, *self.layer_positions]
        return [PositionContext.build(m, q_positions, k_positions, dtype) if m is not None
                else None for m in schemes]

    def _per_layer(self, contexts: list[PositionContext | None]) -> list[PositionContext | None]:
        """Each layer's context: its scheme's, with the layer's own tables where the scheme
        keeps one per layer (``scores`` terms with ``for_layer``: shaw, cope)."""
        out = []
        for i, k in enumerate(self.layer_position):
            ctx = contexts[k]
            pick = getattr(ctx.scores, "for_layer", None) if ctx is not None else None
            out.append(dataclasses.replace(ctx, scores=pick(i)) if pick is not None else ctx)
        return out
