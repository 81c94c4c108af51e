"""Dimensions that stack-level position schemes read from the attention they serve."""

from __future__ import annotations

from txdsl.sdk import ArgError, Dims


def heads_of(dims: Dims, kind: str) -> int:
    """The attention's head count, or an :class:`ArgError` saying it is unknown."""
    if dims.heads is None:
        raise ArgError(f"{kind} positions need the attention's head count, which is unknown here",
                       hint=f"use {kind} as the position of a stack whose attention sets heads")
    return dims.heads


def head_dim_of(dims: Dims, kind: str) -> int:
    """The attention's head size: ``dims.head_dim``, else ``d_model // heads``."""
    if dims.head_dim is not None:
        return dims.head_dim
    return dims.d_model // heads_of(dims, kind)
