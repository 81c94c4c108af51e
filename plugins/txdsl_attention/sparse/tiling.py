"""Which keys each query tile of the ``blocked`` kernel gathers: the tile plan.

Queries are cut into tiles of ``c`` slots (slot = index; the blocked kernel
runs only where queries and keys are the same sequence). Each query tile
gathers the same number ``K`` of key *columns*, known from the pattern alone
(no shape depends on data):

- a **band** of key tiles around its own (``lo`` before, ``hi`` after; causal:
  none after), from the windows and blocks (:class:`~.patterns.Local`,
  :class:`~.patterns.Block`) — Longformer's "sliding chunks";
- ``R`` **random** key tiles (:class:`~.patterns.Random`, BigBird), not in the band;
- **global columns**: key slots every query may see (:class:`~.patterns.Global`,
  the fixed pattern's :class:`~.patterns.Summary`; run-time
  ``global_attention_mask`` positions in eager mode), each once (not where
  the band or a random tile already holds it).

Global *queries* (rows) see every key: the kernel computes them apart.
The exact mask (:meth:`AttentionMask.allows`, the definition) is evaluated on
the gathered ``(tile, query, column)`` triples only: ``(B|1, H|1, nq, c, K)``.
A pattern with no such plan (strided, a ring) gets ``None``: dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import patterns as P


def leaves(atom) -> list:
    """The atoms of a union or of factorised heads, flattened (a superset is enough)."""
    if isinstance(atom, P.Union):
        return [x for a in atom.parts for x in leaves(a)]
    if isinstance(atom, P.PerHead):
        return leaves(atom.first) + leaves(atom.second)
    return [atom]


def band_of(atom, c: int, nq: int, causal: bool) -> tuple[int, int] | None:
    """``(lo, hi)``: key tiles before and after its own that a query tile needs."""
    if isinstance(atom, P.Local) and not atom.ring_length:
        span = (atom.window - 1) * atom.dilation
        return -(-span // c), 0 if causal else (c - 1 + span) // c
    if isinstance(atom, P.Block):
        b, r = atom.block, atom.reach_blocks
        lo = max(i - max(0, (i * c // b - r) * b) // c for i in range(nq))
        hi = max((((i * c + c - 1) // b + r + 1) * b - 1) // c - i for i in range(nq))
        return lo, 0 if causal else max(0, hi)
    return None


def column_slots(atom, S: int) -> list[int] | None:
    """Key slots every query may see (global keys, fixed-pattern summaries)."""
    if isinstance(atom, P.Global):
        slots = set(range(min(atom.first, S))) | {p for p in atom.positions if p < S}
        return sorted(slots | (set(range(max(S - atom.last, 0), S)) if atom.last else set()))
    if isinstance(atom, P.Summary):
        return [j for j in range(S) if j % atom.stride >= atom.stride - atom.summary]
    return None


def random_tiles(atom: P.Random, c: int) -> int:
    """At most how many key tiles a query tile's random blocks touch."""
    rb, r = atom.block, atom.r
    if c % rb == 0 or rb % c == 0:  # aligned: the tile is inside a block, or blocks in a tile
        return max(1, c // rb) * r * max(1, rb // c)
    return atom.max_tiles(c, 1 << 30)


@dataclass
class TilePlan:
    c: int  # queries (and key slots) per tile
    nq: int  # query tiles
    cols: Tensor  # (nq, K) long: the key slot of each gathered column (0 where not valid)
    valid: Tensor  # (nq, K) bool: the column is a real, not yet counted key
    row_slots: list[int]  # static global queries (slots)
    runtime_rows: Tensor | None  # (G,) run-time global queries (eager), or None


def plan(union, c: int, T: int, causal: bool, device, runtime: Tensor | None,
         compiling: bool) -> TilePlan | None:
    """The tile plan of ``union`` for ``T`` queries over the same ``T`` keys, or ``None``."""
    nq = -(-T // c)
    lo, hi, bands, cols, rows, randoms = 0, -1, False, set(), set(), []
    for atom in leaves(union):
        band, slots = band_of(atom, c, nq, causal), column_slots(atom, T)
        if band is not None:
            lo, hi, bands = max(lo, band[0]), max(hi, band[1]), True
        elif slots is not None:
            cols |= set(slots)
            if isinstance(atom, P.Global):
                rows |= set(slots)
        elif isinstance(atom, P.Random):
            randoms.append(atom)
        elif not (isinstance(atom, P.GlobalInput) and not compiling):
            return None
    runtime_cols = None
    if runtime is not None:  # eager only: positions global in any row (exact per row below)
        runtime_cols = runtime.any(0).nonzero().flatten()
    tile = torch.arange(nq, device=device)[:, None]  # (nq, 1)
    pieces, valids = [], []
    n_band = lo + hi + 1 if bands else 0
    if n_band:
        key_tile = tile - lo + torch.arange(n_band, device=device)  # (nq, n_band)
        slot = (key_tile[..., None] * c + torch.arange(c, device=device)).flatten(1)
        pieces.append(slot)
        valids.append((slot >= 0) & (slot < T))
    in_band = (lambda t: (t >= tile - lo) & (t <= tile + hi)) if n_band else \
        (lambda t: torch.zeros_like(t, dtype=torch.bool))
    seen_tiles = None
    R = min(nq, sum(random_tiles(a, c) for a in randoms))
    if R:
        ks = torch.arange(nq, device=device) * c
        layout = P.Union(tuple(randoms)).blocks(ks[:, None], ks[:, None] + c - 1, ks[None],
                                                ks[None] + c - 1).expand(nq, nq)
        layout = layout & ~in_band(torch.arange(nq, device=device)[None])
        if causal:
            layout = layout & (ks[None] <= ks[:, None])
        order = torch.sort((~layout).to(torch.int8), dim=-1, stable=True).indices[:, :R]
        seen = torch.gather(layout, 1, order)  # (nq, R): a tile R doesn't fill is not seen
        seen_tiles = torch.where(seen, order, -1)
        slot = (order[..., None] * c + torch.arange(c, device=device)).flatten(1)
        pieces.append(slot)
        valids.append(seen.repeat_interleave(c, dim=1) & (slot < T))
    for col in ([torch.tensor(sorted(cols), dtype=torch.long, device=device)] if cols else []) + \
            ([runtime_cols] if runtime_cols is not None else []):
        t = (col // c)[None]  # (1, G)
        ok = ~in_band(t)
        if seen_tiles is not None:
            ok = ok & ~(seen_tiles[..., None] == t[:, None]).any(1)
        if runtime_cols is not None and col is not runtime_cols and cols:
            ok = ok & ~torch.isin(col, runtime_cols)[None]  # static and run-time: once
        pieces.append(col[None].expand(nq, -1))
        valids.append(ok.expand(nq, -1))
    if not pieces:
        return None
    slots = torch.cat(pieces, 1)
    valid = torch.cat(valids, 1)
    return TilePlan(c, nq, torch.where(valid, slots, 0), valid, sorted(rows), runtime_cols)
