"""Position-based sparsity patterns: one description, three uses.

Each atom is a frozen dataclass that answers, for index tensors of slots
(``q`` the query's slot, ``kv`` the key's, ``b`` the row, ``h`` the head):

- ``__call__(b, h, q, kv) -> bool``: the definition (an
  :class:`~txdsl.sdk.mask.AttentionMask` pattern predicate; the dense,
  additive and FlexAttention lowerings all evaluate it);
- ``blocks(qs, qe, ks, ke) -> bool``: may a query tile with slots
  ``qs..qe`` see any key of a tile ``ks..ke`` (a superset: the ``blocked``
  implementation computes only such tiles, then applies the definition);
- ``reach``: how far back a query can see (``None``: unbounded), which makes a
  ring-buffer decode state possible; ``sinks``: leading positions every query
  may see (kept in that state).

Causality is the stack's (the mask's ``causal``), not a pattern's: patterns
are symmetric unless their paper says otherwise. Lin et al. 2021 (§4.1.1,
https://arxiv.org/abs/2106.04554) survey them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Local:
    """Sliding window (Beltagy et al. 2020): ``|q - kv| < window`` (``window`` keys on the
    past side, the query included; causal: ``0 <= q - kv < window``). ``dilation`` d
    keeps every d-th key: ``(q - kv) % d == 0`` and ``|q - kv| < window * d``.
    ``ring``: distances wrap around ``length`` (Star-Transformer's ring)."""

    window: int
    dilation: int = 1
    ring_length: int = 0  # > 0: circular distance on a ring of this many positions

    def _distance(self, q: Tensor, kv: Tensor) -> Tensor:
        d = (q - kv).abs()
        if self.ring_length:
            d = torch.minimum(d, self.ring_length - d)
        return d

    def __call__(self, b, h, q, kv):
        d = self._distance(q, kv)
        ok = d < self.window * self.dilation
        return ok & (d % self.dilation == 0) if self.dilation > 1 else ok

    def blocks(self, qs, qe, ks, ke):
        if self.ring_length:
            return torch.ones_like(qs + ks, dtype=torch.bool)
        span = (self.window - 1) * self.dilation
        return (ks <= qe + span) & (ke >= qs - span)

    @property
    def reach(self) -> int | None:
        return None if self.ring_length else (self.window - 1) * self.dilation + 1

    sinks = 0


@dataclass(frozen=True)
class Block:
    """Block-local (Qiu et al. 2019; BigBird's sliding blocks with ``reach`` 1):
    ``|q // block - kv // block| <= reach``."""

    block: int
    reach_blocks: int = 0

    def __call__(self, b, h, q, kv):
        return (q // self.block - kv // self.block).abs() <= self.reach_blocks

    def blocks(self, qs, qe, ks, ke):
        b, r = self.block, self.reach_blocks
        return (ks // b <= qe // b + r) & (ke // b >= qs // b - r)

    @property
    def reach(self) -> int:
        return (self.reach_blocks + 1) * self.block

    sinks = 0


@dataclass(frozen=True)
class Strided:
    """Child et al. 2019's strided pattern, second head: ``(q - kv) % stride == 0``."""

    stride: int

    def __call__(self, b, h, q, kv):
        return (q - kv) % self.stride == 0

    def blocks(self, qs, qe, ks, ke):
        return torch.ones_like(qs + ks, dtype=torch.bool)

    reach = None
    sinks = 0


@dataclass(frozen=True)
class Summary:
    """Child et al. 2019's fixed pattern, second head: the last ``summary`` positions of
    every ``stride``-long block are seen by all: ``kv % stride >= stride - summary``."""

    stride: int
    summary: int

    def __call__(self, b, h, q, kv):
        return kv % self.stride >= self.stride - self.summary

    def blocks(self, qs, qe, ks, ke):
        return torch.ones_like(qs + ks, dtype=torch.bool)

    reach = None
    sinks = 0


@dataclass(frozen=True)
class Global:
    """Global positions (Beltagy et al. 2020; Zaheer et al. 2020): ``g(q) | g(kv)`` with
    g = the first ``first`` slots, the last ``last`` of ``length`` keys, the listed
    ``positions``."""

    first: int = 0
    last: int = 0
    length: int = 0  # the key count ``last`` counts from (set per forward)
    positions: tuple[int, ...] = ()

    def is_global(self, i: Tensor) -> Tensor:
        g = i < self.first
        if self.last:
            g = g | (i >= self.length - self.last)
        for p in self.positions:
            g = g | (i == p)
        return g

    def __call__(self, b, h, q, kv):
        return self.is_global(q) | self.is_global(kv)

    def blocks(self, qs, qe, ks, ke):
        def touches(s, e):
            g = s < self.first
            if self.last:
                g = g | (e >= self.length - self.last)
            for p in self.positions:
                g = g | ((s <= p) & (p <= e))
            return g
        return touches(qs, qe) | touches(ks, ke)

    @property
    def reach(self) -> int | None:
        return 0 if not self.last and not self.positions else None

    @property
    def sinks(self) -> int:
        return self.first


class GlobalInput:
    """Global positions given at run time: ``global_attention_mask`` ``(B, S)``, 1 = global
    (Longformer's input): ``g[b, q] | g[b, kv]``."""

    def __init__(self, mask: Tensor):
        self.mask = mask.bool()  # (B, S)

    def __call__(self, b, h, q, kv):
        return self.mask[b, q] | self.mask[b, kv]

    def blocks(self, qs, qe, ks, ke):
        any_row = self.mask.any(0)  # (S,)
        hits = torch.cumsum(any_row.long(), 0)  # a prefix count: any global in s..e?

        def touches(s, e):
            s, e = s.clamp(0, hits.numel() - 1), e.clamp(0, hits.numel() - 1)
            before = torch.where(s > 0, hits[(s - 1).clamp(min=0)], torch.zeros_like(s))
            return hits[e] > before
        return touches(qs, qe) | touches(ks, ke)

    reach = None
    sinks = 0


class Random:
    """``r`` random key blocks per query block (Zaheer et al. 2020): a seeded table
    ``(n_blocks, n_blocks)`` drawn once per build, the same for every head and row;
    causal builds draw among the query's own and earlier blocks."""

    def __init__(self, table: Tensor, block: int):
        self.table, self.block = table, block  # (n_blocks, n_blocks) bool

    @staticmethod
    def draw(n_blocks: int, r: int, seed: int, causal_draw: bool) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        table = torch.zeros(n_blocks, n_blocks, dtype=torch.bool)
        for i in range(n_blocks):
            pool = i + 1 if causal_draw else n_blocks
            table[i, torch.randperm(pool, generator=g)[:r]] = True
        return table

    def __call__(self, b, h, q, kv):
        return self.table[q // self.block, kv // self.block]

    def blocks(self, qs, qe, ks, ke):
        b = self.block
        if qs.numel() and bool(((qe // b == qs // b) & (ke // b == ks // b)).all()):
            return self.table[qs // b, ks // b]
        return torch.ones_like(qs + ks, dtype=torch.bool)

    reach = None
    sinks = 0


@dataclass(frozen=True)
class PerHead:
    """Factorised heads (Child et al. 2019): heads ``h < split`` use ``first``, the rest
    ``second``."""

    first: object
    second: object
    split: int

    def __call__(self, b, h, q, kv):
        return torch.where(h < self.split, self.first(b, h, q, kv), self.second(b, h, q, kv))

    def blocks(self, qs, qe, ks, ke):
        return self.first.blocks(qs, qe, ks, ke) | self.second.blocks(qs, qe, ks, ke)

    reach = None
    sinks = 0


@dataclass(frozen=True)
class Union:
    """Any of ``parts`` (a pair is allowed if one pattern allows it)."""

    parts: tuple

    def __call__(self, b, h, q, kv):
        ok = self.parts[0](b, h, q, kv)
        for p in self.parts[1:]:
            ok = ok | p(b, h, q, kv)
        return ok

    def blocks(self, qs, qe, ks, ke):
        ok = self.parts[0].blocks(qs, qe, ks, ke)
        for p in self.parts[1:]:
            ok = ok | p.blocks(qs, qe, ks, ke)
        return ok

    @property
    def reach(self) -> int | None:
        reaches = [p.reach for p in self.parts]
        return None if any(r is None for r in reaches) else max(reaches)

    @property
    def sinks(self) -> int:
        return max(p.sinks for p in self.parts)
