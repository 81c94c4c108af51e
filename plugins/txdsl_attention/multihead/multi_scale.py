"""Multi-scale heads (Guo, Qiu, Liu, Xue, Zhang 2020, https://arxiv.org/abs/1912.00544).

Multi-Scale Self-Attention gives each head a fixed span ``w_h``: head ``h``
at query slot ``i`` sees only keys with ``|i - j| <= w_h`` (``0 <= i - j <=
w_h`` in a causal stack, where the mask adds causality), so small-scale
heads model local structure and large-scale ones long-range context. The
spans are written ``"|"``-separated, one per head (``"1|2|4|16"``); a span
at least the sequence length is a full head. Grouped-query attention is
unaffected (the spans restrict query heads).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator
from torch import Tensor

from txdsl.sdk import ArgError, Dims

from ..priors.scores import ScoresArgs, ScoresAttention, distance


class MultiScaleArgs(ScoresArgs):
    """Multi-scale heads (Guo et al. 2020): a fixed span per head."""

    example: ClassVar[dict[str, Any]] = {"spans": "1|2|4|8"}
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "a span measures distances within one sequence"}

    spans: str = Field(description="each head's span w_h in tokens, '|'-separated, one per "
                       "head (e.g. \"1|2|4|8\"): head h sees keys with |i - j| <= w_h")

    @field_validator("spans", mode="before")
    @classmethod
    def _spans(cls, value: object) -> object:
        if isinstance(value, (list, tuple)):
            value = "|".join(str(v) for v in value)
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, str):
            parts = [p.strip() for p in value.split("|")]
            if not all(p.isdigit() for p in parts):
                raise ValueError(f"spans {value!r} must be non-negative integers separated by '|'")
            value = "|".join(parts)
        return value

    def span_list(self) -> list[int]:
        return [int(p) for p in self.spans.split("|")]

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if len(self.span_list()) != self.heads:
            raise ArgError(f"spans {self.spans!r} gives {len(self.span_list())} spans for "
                           f"{self.heads} heads", arg="spans", hint="one span per head")


class MultiScaleAttention(ScoresAttention):
    """Softmax attention where head ``h`` sees only keys within ``spans[h]``."""

    def __init__(self, *, spans: list[int], **parts):
        super().__init__(**parts)
        self.spans = tuple(spans)

    @classmethod
    def from_args(cls, args: MultiScaleArgs, ctx) -> "MultiScaleAttention":
        return cls(spans=args.span_list(), **cls.projections(args, ctx))

    def allowed(self, mask, T: int, S: int, device) -> Tensor:
        span = torch.tensor(self.spans, device=device)[:, None, None]  # (H, 1, 1)
        near = distance(mask, T, S, device).abs()[None] <= span  # (H, T, S)
        base = mask.dense(T, S, device=device)  # (B|1, 1, T, S) or None
        near = near[None]  # (1, H, T, S)
        return near if base is None else base & near
