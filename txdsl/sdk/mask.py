"""Attention masks as data: described once per stack forward, lowered once per form.

A mask says which keys each query may see. It is *described* by the stack
(causal, key padding, the query's slot among the keys, documents of packed
rows) and extended by an attention kind with *pattern predicates* (a
window, global tokens, blocks: ``pattern(b, h, q, kv) -> bool`` on index
tensors). One function, :meth:`AttentionMask.allows`, defines it; every
lowering evaluates that function, so the forms agree by construction:

- nothing at all: :attr:`AttentionMask.is_plain_causal` (SDPA's
  ``is_causal=True`` fast path) or :attr:`AttentionMask.is_empty`;
- a dense ``(B|1, 1|H, T, S)`` bool tensor (:meth:`dense`), or the additive
  float twin (:meth:`additive`), for the reference and SDPA kernels;
- a FlexAttention ``BlockMask`` (:meth:`block_mask`), whose block sparsity
  skips whole tiles of a sparse pattern.

Each lowering is computed once and kept: the stack passes one mask object
to all its layers, and :meth:`with_pattern` returns one shared child per
pattern, so ten layers of a 256-token window lower that window once.
``lowerings`` counts the lowerings actually computed (a test checks it).

Index conventions (what predicates receive): ``q`` is the query's *slot*
(its index among the keys: ``past + i`` for the ``i``-th new token when
decoding with a cache), ``kv`` the key's slot, ``b`` the batch row, ``h``
the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import Tensor

Pattern = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]  # (b, h, q_slot, kv_slot) -> bool


@dataclass(eq=False)
class AttentionMask:
    """Which keys each query may see.

    - ``causal``: a query sees keys at its own slot and before;
    - ``key_padding``: ``(B, S)`` bool, ``True`` for a real key (``None``: all real);
    - ``q_slots``: ``(T,)`` the queries' slots among the ``S`` keys (``None``:
      the last ``T``, i.e. ``S - T .. S - 1``);
    - ``q_documents`` ``(B, T)`` / ``k_documents`` ``(B, S)``: document ids of
      packed rows; a query sees only keys of its own document;
    - ``patterns``: predicates every allowed pair must also satisfy;
    - ``cross``: the keys are another sequence's (cross-attention over the
      encoder's output): position patterns don't apply and :meth:`with_pattern`
      returns the mask unchanged.
    """

    causal: bool = False
    key_padding: Tensor | None = None
    q_slots: Tensor | None = None
    q_documents: Tensor | None = None
    k_documents: Tensor | None = None
    patterns: tuple[Pattern, ...] = ()
    cross: bool = False
    q_from_zero: bool = False  # q_slots are 0 .. T-1 of T keys: as aligned as q_slots=None
    lowerings: int = field(default=0, init=False)
    _lowered: dict = field(default_factory=dict, init=False, repr=False)
    _children: dict = field(default_factory=dict, init=False, repr=False)

    # -------------------------------------------------------------- describing

    @property
    def is_empty(self) -> bool:
        """Every query sees every key."""
        return (not self.causal and self.key_padding is None and self.q_documents is None
                and not self.patterns)

    def as_cross(self) -> "AttentionMask":
        """This mask for cross-attention (``cross=True``), made once."""
        if self.cross:
            return self
        child = self._children.get(("cross",))
        if child is None:
            child = AttentionMask(self.causal, self.key_padding, self.q_slots, self.q_documents,
                                  self.k_documents, self.patterns, cross=True)
            self._children[("cross",)] = child
        return child

    def is_plain_causal(self, T: int, S: int) -> bool:
        """Only causality, queries aligned with keys (T == S): SDPA's ``is_causal`` path."""
        return (self.causal and T == S and (self.q_slots is None or self.q_from_zero)
                and self.key_padding is None
                and self.q_documents is None and not self.patterns)

    def with_pattern(self, key: object, pattern: Pattern) -> "AttentionMask":
        """This mask restricted by ``pattern``; one shared child per ``key`` (e.g.
        ``("window", 256)``), so layers with the same pattern share its lowerings.
        A cross-attention mask is returned as it is: patterns relate positions of
        one sequence."""
        if self.cross:
            return self
        child = self._children.get(key)
        if child is None:
            child = AttentionMask(self.causal, self.key_padding, self.q_slots, self.q_documents,
                                  self.k_documents, self.patterns + (pattern,))
            self._children[key] = child
        return child

    def allows(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor, T: int, S: int) -> Tensor:
        """The definition: may query ``q`` (index among this step's ``T``) see key ``kv``?

        Works on broadcastable index tensors (the dense lowering) and on
        FlexAttention's scalars (its ``mask_mod``) alike.
        """
        slot = self.q_slots[q] if self.q_slots is not None else q + (S - T)
        ok = torch.ones_like(kv, dtype=torch.bool) if not self.causal else kv <= slot
        if self.key_padding is not None:
            ok = ok & self.key_padding[b, kv]
        if self.q_documents is not None and self.k_documents is not None:
            ok = ok & (self.q_documents[b, q] == self.k_documents[b, kv])
        for pattern in self.patterns:
            ok = ok & pattern(b, h, slot, kv)
        return ok

    # ---------------------------------------------------------------- lowering

    lowered_total: ClassVar[int] = 0  # every lowering computed in eager mode, for tests

    def _once(self, key: tuple, make: Callable[[], object]) -> object:
        if any(isinstance(k, torch.SymInt) for k in key):  # traced for export: no memo needed
            self.lowerings += 1
            return make()
        if key not in self._lowered:
            self._lowered[key] = make()
            self.lowerings += 1
            if not torch.compiler.is_compiling():
                AttentionMask.lowered_total += 1
        return self._lowered[key]

    def _batch(self) -> int:
        for t in (self.key_padding, self.q_documents):
            if t is not None:
                return t.shape[0]
        return 1

    def dense(self, T: int, S: int, device: torch.device | None = None,
              heads: int = 1) -> Tensor | None:
        """``(B|1, heads|1, T, S)`` bool, ``True`` where attending is allowed; ``None`` if all is.

        ``heads`` matters only for head-dependent patterns (pass the head count
        when a pattern uses ``h``)."""
        if self.is_empty:
            return None

        def make() -> Tensor:
            B = self._batch()
            b = torch.arange(B, device=device)[:, None, None, None]
            h = torch.arange(heads, device=device)[None, :, None, None]
            q = torch.arange(T, device=device)[None, None, :, None]
            kv = torch.arange(S, device=device)[None, None, None, :]
            return self.allows(b, h, q, kv, T, S).expand(B, heads, T, S)

        return self._once(("dense", T, S, str(device), heads), make)  # type: ignore[return-value]

    def additive(self, T: int, S: int, dtype: torch.dtype, device: torch.device | None = None,
                 heads: int = 1) -> Tensor | None:
        """The mask as an additive float tensor: 0 where allowed, else the dtype's min.

        A large finite negative, not ``-inf``, so a fully masked row (a padding
        query) gives uniform weights instead of NaN, as Hugging Face does.
        """
        allowed = self.dense(T, S, device, heads)
        if allowed is None:
            return None

        def make() -> Tensor:
            zero = torch.zeros((), dtype=dtype, device=device)
            return torch.where(allowed, zero, torch.finfo(dtype).min)

        return self._once(("additive", T, S, dtype, str(device), heads), make)  # type: ignore[return-value]

    def block_mask(self, T: int, S: int, device: torch.device | str, heads: int = 1,
                   block_size: int = 128):
        """A FlexAttention ``BlockMask`` of the same mask (``None`` if all is allowed)."""
        if self.is_empty:
            return None
        from torch.nn.attention.flex_attention import create_block_mask

        def mask_mod(b, h, q_idx, kv_idx):
            return self.allows(b, h, q_idx, kv_idx, T, S)

        def make():
            B = self._batch()
            H = heads if heads > 1 else None
            return create_block_mask(mask_mod, B, H, T, S, device=device,
                                     BLOCK_SIZE=block_size)

        return self._once(("block", T, S, str(device), heads, block_size), make)
