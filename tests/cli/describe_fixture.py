"""A third-party-like plugin for describe tests: every way an argument can document itself."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import Field, PositiveInt

from txdsl.hookspecs import hookimpl
from txdsl.sdk import AttentionArgs, NormArgs, Targets


class Mode(enum.Enum):
    FAST = "fast"
    EXACT = "exact"


class WindowArgs(AttentionArgs):
    """Sliding-window attention (Beltagy et al. 2020, https://arxiv.org/abs/2004.05150).

    Each query sees the ``window`` keys before it.
    """

    window: PositiveInt = Field(description="keys each query sees")
    stride: int = Field(default=1, ge=1, le=64)  # step between windows
    # how windows are laid out,
    # over two comment lines
    layout: Literal["band", "block"] = "band"
    mode: Mode = Mode.EXACT
    """Which kernel family to prefer."""
    note: str | None = None


class PlainNormArgs(NormArgs):
    extra: float = 0.5


@hookimpl
def register_attention(register):
    register(name="window", args=WindowArgs, build=lambda a, c: None, impl="reference")
    register(name="window", args=WindowArgs, build=lambda a, c: None, impl="triton",
             priority=20, targets=Targets(devices=frozenset({"cuda"}),
                                          requires=("no_such_module_x",)))


@hookimpl
def register_norms(register):
    register(name="plainnorm", args=PlainNormArgs)
