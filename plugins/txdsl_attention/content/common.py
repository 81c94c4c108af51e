"""Helpers the content-based kinds share: the working dtype, masked weighted sums, and
query chunks (the dense kinds bound their score memory by computing a few rows at a time)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor

from txdsl.sdk.attention import masked_fill_value


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Scores and softmax run in float32 for half-precision inputs (as ``softmax_attention``)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def masked_softmax_sum(scores: Tensor, allowed: Tensor | None, v: Tensor, *, dropout: float,
                       training: bool) -> Tensor:
    """``softmax(scores masked by allowed) @ v``; masked scores become the dtype's finite min,
    so a row with nothing allowed gives uniform weights, not NaN. scores ``(..., T, S)``,
    v ``(..., S, hd)``."""
    if allowed is not None:
        scores = scores.masked_fill(~allowed, masked_fill_value(scores.dtype))
    weights = F.dropout(torch.softmax(scores, dim=-1), p=dropout, training=training)
    return weights @ v  # (..., T, hd)


def query_slots(mask, T: int, S: int, device) -> Tensor:
    """``(T,)`` each query's slot among the ``S`` keys (``mask.q_slots`` or the last ``T``)."""
    if mask.q_slots is not None:
        return mask.q_slots.to(device)
    return torch.arange(S - T, S, device=device)


SCORE_ELEMENTS = 1 << 22  # scores (B * H * rows * S) per query chunk: 16 MiB in float32


def row_chunks(T: int, per_row: int) -> list[tuple[int, int]]:
    """Query ranges ``[i0, i1)`` whose scores (``per_row`` each) fit ``SCORE_ELEMENTS``."""
    step = max(1, SCORE_ELEMENTS // max(1, per_row))
    return [(i, min(T, i + step)) for i in range(0, T, step)]


def rows_allowed(mask, i0: int, i1: int, T: int, S: int, device) -> Tensor | None:
    """``(B|1, 1, i1 - i0, S)`` bool: the stack's mask for queries ``i0..i1`` only (``None``:
    all allowed), evaluated from its definition, never as a dense ``(T, S)`` tensor."""
    if mask.is_empty:
        return None
    b = torch.arange(mask._batch(), device=device).view(-1, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)
    q = torch.arange(i0, i1, device=device).view(1, 1, -1, 1)
    return mask.allows(b, h, q, torch.arange(S, device=device).view(1, 1, 1, S), T, S)


def by_row_chunks(fn, T: int, per_row: int) -> Tensor:
    """``fn(i0, i1) -> (B, H, i1 - i0, hd)`` over the chunks of :func:`row_chunks`, written
    into one preallocated ``(B, H, T, hd)`` output (no small long-lived pieces between the
    chunks' large temporaries). With several chunks and gradients on, each chunk is
    recomputed in the backward (``torch.utils.checkpoint``), so training keeps one chunk's
    scores at a time instead of all of them."""
    chunks = row_chunks(T, per_row)
    if len(chunks) == 1:
        return fn(0, T)
    recompute = torch.is_grad_enabled()
    out = None
    for i0, i1 in chunks:
        y = torch.utils.checkpoint.checkpoint(fn, i0, i1, use_reentrant=False) if recompute \
            else fn(i0, i1)
        if out is None:
            out = y.new_empty(*y.shape[:2], T, y.shape[-1])
        out[:, :, i0:i1] = y
    return out
