"""Learned absolute positions (BERT, GPT-2; Gehring et al. 2017, https://arxiv.org/abs/1705.03122).

One trained vector per position, ``embed`` = ``nn.Embedding(max_len, width)``,
added to the token embeddings.

``padding_idx`` is RoBERTa's convention (from fairseq's ``make_positions``):
positions start at ``padding_idx + 1`` and padding tokens get position
``padding_idx`` (whose row is zero and untrained). The module exposes
``offset`` (``padding_idx + 1``, or 0) and :meth:`LearnedPositions.position_ids`,
which the runtime calls to turn the token ids (else the attention mask) into
position ids exactly as Hugging Face's ``create_position_ids_from_input_ids``
does: a token is padding when its id is ``padding_idx``, whatever the mask.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, NonNegativeInt, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, PositionArgs


class LearnedArgs(PositionArgs):
    """A trained position vector per position, added to the embeddings (BERT, GPT-2, RoBERTa)."""

    acts: ClassVar = "embedding"
    example: ClassVar[dict] = {"max_len": 64}  # what the contract suite builds it with
    max_len: PositiveInt = Field(description="rows of the position table: the longest sequence "
                                 "it embeds, plus padding_idx + 1 with padding_idx (GPT-2's "
                                 "n_positions 1024, BERT's max_position_embeddings 512); must "
                                 "cover the model's context")
    padding_idx: NonNegativeInt | None = None  # RoBERTa: positions start at padding_idx + 1

    def offset(self) -> int:
        return 0 if self.padding_idx is None else self.padding_idx + 1

    def check(self, dims: Dims) -> None:
        if self.padding_idx is not None and self.padding_idx >= self.max_len:
            raise ArgError(f"padding_idx ({self.padding_idx}) must be below max_len ({self.max_len})",
                           arg="padding_idx")
        if dims.context is not None and dims.context + self.offset() > self.max_len:
            extra = f" + offset {self.offset()}" if self.offset() else ""
            raise ArgError(f"max_len ({self.max_len}) is shorter than the context "
                           f"({dims.context}{extra})", arg="max_len",
                           hint=f"set max_len: {dims.context + self.offset()}")

    def param_count(self, dims: Dims) -> int:
        return self.max_len * dims.width


class LearnedPositions(nn.Module):
    acts = "embedding"

    def __init__(self, *, embed: nn.Embedding, padding_idx: int | None = None):
        super().__init__()
        self.embed = embed
        self.padding_idx = padding_idx
        self.offset = 0 if padding_idx is None else padding_idx + 1

    @classmethod
    def from_args(cls, args: LearnedArgs, ctx: BuildContext) -> "LearnedPositions":
        args.check(ctx.dims)
        embed = nn.Embedding(args.max_len, ctx.dims.width, padding_idx=args.padding_idx)
        return cls(embed=embed, padding_idx=args.padding_idx)

    def position_ids(self, attention_mask: Tensor | None, T: int, past: int = 0,
                     input_ids: Tensor | None = None) -> Tensor:
        """Position ids ``(B|1, T)`` for ``T`` new tokens after ``past`` cached ones.

        Without ``padding_idx``: ``past .. past+T-1`` (``(1, T)``; the mask is
        not used). With it (RoBERTa), a token is real where ``input_ids`` ``(B,
        T)`` differs from ``padding_idx`` (Hugging Face's rule, so a padded batch
        passed without a mask gets the same positions), or, without ids, where
        ``attention_mask`` ``(B, T)`` (or ``(B, past+T)``: its last ``T``
        columns) is 1; real tokens get ``padding_idx + past + (count of real
        tokens so far)`` and padding ``padding_idx``, as HF's
        ``create_position_ids_from_input_ids(input_ids, padding_idx, past)``.
        """
        device = self.embed.weight.device
        if self.padding_idx is None or (attention_mask is None and input_ids is None):
            return (torch.arange(T, device=device) + past + self.offset)[None]  # (1, T)
        real = (input_ids.ne(self.padding_idx) if input_ids is not None
                else attention_mask[:, -T:]).to(device=device, dtype=torch.long)  # (B, T)
        return (torch.cumsum(real, dim=1) + past) * real + self.padding_idx  # (B, T)

    def forward(self, position_ids: Tensor) -> Tensor:  # (B, T) -> (B, T, width)
        return self.embed(position_ids)
