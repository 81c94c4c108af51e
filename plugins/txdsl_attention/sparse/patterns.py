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

import functools
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

    def max_tiles(self, c: int, n: int) -> int:
        """At most how many key tiles of ``c`` slots a query tile's keys touch (``n``: all)."""
        return n if self.ring_length else span_tiles(c + 2 * (self.window - 1) * self.dilation, c)

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

    def max_tiles(self, c: int, n: int) -> int:
        return span_tiles((-(-c // self.block) + 1 + 2 * self.reach_blocks) * self.block, c)

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

    def max_tiles(self, c: int, n: int) -> int:
        return n


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

    def max_tiles(self, c: int, n: int) -> int:
        return n


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

    def max_tiles(self, c: int, n: int) -> int:
        return -(-self.first // c) + span_tiles(self.last, c) + len(self.positions)

    def query_tiles(self, c: int, offset: int, T: int) -> set[int]:
        """The query tiles (of ``c`` queries, slot = index + ``offset``) holding a global query."""
        S = T + offset
        slots = set(range(min(self.first, S))) | set(range(max(S - self.last, 0), S)) \
            if self.last else set(range(min(self.first, S)))
        slots |= {p for p in self.positions if p < S}
        return {(s - offset) // c for s in slots if s >= offset}


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


@functools.lru_cache(maxsize=16)
def random_tables(r: int, seed: int, max_blocks: int) -> dict[int, Tensor]:
    """For each block count ``n``: ``(n, n)`` bool, ``r`` key blocks per query block."""
    g = torch.Generator().manual_seed(seed)
    causal = torch.zeros(max_blocks, max_blocks, dtype=torch.bool)
    for i in range(max_blocks):  # among the query's own and earlier blocks: any length agrees
        causal[i, torch.randperm(i + 1, generator=g)[:r]] = True
    tables = {0: causal}  # 0: the causal table
    for n in range(1, max_blocks + 1):
        picks = torch.rand(n, n, generator=g).argsort(dim=-1)[:, :r]  # (n, min(r, n))
        tables[n] = torch.zeros(n, n, dtype=torch.bool).scatter_(1, picks, True)
    return tables


class Random:
    """``r`` random key blocks per query block (Zaheer et al. 2020), drawn once per build
    (seeded), the same for every head and row. Bidirectional: a sequence of ``n`` blocks
    uses a table ``(n, n)`` drawn among its own blocks, for every ``n`` up to the context
    (as BigBird draws per sequence). Causal: one table whose row ``i`` is drawn among the
    blocks ``0..i``, so a prefix (decoding) and the whole sequence see the same keys."""

    def __init__(self, r: int, block: int, seed: int, max_blocks: int):
        self.r, self.block = r, block
        self.tables = random_tables(r, seed, max_blocks)
        self.table = self.tables[0]

    def bound(self, S: int, causal: bool) -> "Random":
        """This pattern for ``S`` keys: the causal table, or that of ``ceil(S / block)``
        blocks."""
        n = 0 if causal else -(-S // self.block)
        if n not in self.tables or self.tables[n] is self.table:
            return self
        out = object.__new__(Random)
        out.r, out.block, out.tables, out.table = self.r, self.block, self.tables, self.tables[n]
        return out

    def __call__(self, b, h, q, kv):
        n = self.table.shape[0]
        return self.table.to(q.device)[(q // self.block).clamp(max=n - 1),
                                       (kv // self.block).clamp(max=n - 1)]

    def blocks(self, qs, qe, ks, ke):
        """Any drawn (query block, key block) pair within the tiles: a 2-D prefix count."""
        b, n = self.block, self.table.shape[0]
        P = torch.nn.functional.pad(self.table.long().cumsum(0).cumsum(1), (1, 0, 1, 0))
        P = P.to(qs.device)
        q0, q1 = (qs // b).clamp(0, n - 1), (qe // b).clamp(0, n - 1) + 1
        k0, k1 = (ks // b).clamp(0, n - 1), (ke // b).clamp(0, n - 1) + 1
        return (P[q1, k1] - P[q0, k1] - P[q1, k0] + P[q0, k0]) > 0

    def max_tiles(self, c: int, n: int) -> int:
        return (-(-c // self.block) + 1) * self.r * span_tiles(self.block, c)

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

    def max_tiles(self, c: int, n: int) -> int:
        return min(n, self.first.max_tiles(c, n) + self.second.max_tiles(c, n))


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

    def max_tiles(self, c: int, n: int) -> int:
        return min(n, sum(p.max_tiles(c, n) for p in self.parts))


def span_tiles(length: int, c: int) -> int:
    """At most how many tiles of ``c`` slots a run of ``length`` slots touches."""
    return -(-length // c) + 1 if length > 0 else 0
