"""A multi-task adapter prior: attention conditioned on a task embedding (Pilault, Elhattami,
Pal 2021, "Conditionally Adaptive Multi-Task Learning", https://arxiv.org/abs/2009.09139).

CA-MTL's conditional attention adds a block-diagonal matrix made from the
task's embedding ``z`` to the scores of every head:

    Attention(Q, K, V, z) = softmax(M(z) + Q K^T / sqrt(d_k)) V
    M(z) = diag(A'_1(z), ..., A'_N(z)),   A'_n(z) = A_n * gamma_n(z) + beta_n(z)

with ``A_n`` learned ``(max_len/N, max_len/N)`` blocks and ``gamma``,
``beta`` linear maps of ``z`` (FiLM; here one scalar per block). Row ``i``
of ``M`` is the query at slot ``i``, column ``j`` the key at slot ``j``.
The task of each row is the model input ``task_ids`` ``(B,)``
(``StackState.inputs["task_ids"]``); without it every row is task 0.
Grouped-query attention and decoding with the cache are unaffected.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, Dims

from .scores import ScoresArgs, ScoresAttention, query_slots


class TaskAdapterArgs(ScoresArgs):
    """CA-MTL conditional attention (Pilault et al. 2021): a task-conditioned block-diagonal
    bias."""

    unsupported: ClassVar[dict[str, str]] = {
        "cross": "the block-diagonal prior relates positions of one sequence"}
    example: ClassVar[dict[str, Any]] = {"tasks": 3, "max_len": 64}
    tasks: PositiveInt = Field(description="the number of tasks (task_ids are 0 .. tasks-1)")
    max_len: PositiveInt = Field(description="the longest sequence M(z) covers; at least the "
                                 "context, divisible by blocks")
    blocks: PositiveInt = Field(default=4, description="N, the diagonal blocks of M(z)")
    task_dim: PositiveInt = Field(default=16, description="the task embedding's width")

    def block(self) -> int:
        return self.max_len // self.blocks

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if self.max_len % self.blocks:
            raise ArgError(f"max_len ({self.max_len}) is not divisible by blocks "
                           f"({self.blocks})", arg="blocks", hint="pick blocks dividing max_len")
        if dims.context is not None and self.max_len < dims.context:
            raise ArgError(f"max_len ({self.max_len}) is shorter than the context "
                           f"({dims.context})", arg="max_len", hint="set max_len: context")

    def param_count(self, dims: Dims) -> int:
        film = 2 * (self.task_dim * self.blocks + self.blocks)
        return super().param_count(dims) + self.tasks * self.task_dim + film \
            + self.blocks * self.block() ** 2

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return super().flops_per_token(dims, seq_len) + self.heads * seq_len


class TaskAdapterAttention(ScoresAttention):
    """Softmax attention plus M(z), the task's block-diagonal bias."""

    def __init__(self, *, tasks: int, max_len: int, blocks: int, task_dim: int, **parts):
        super().__init__(**parts)
        self.max_len, self.blocks = max_len, blocks
        b = max_len // blocks
        self.task_embedding = nn.Embedding(tasks, task_dim)  # z
        self.gamma, self.beta = nn.Linear(task_dim, blocks), nn.Linear(task_dim, blocks)
        self.A = nn.Parameter(torch.randn(blocks, b, b) * 0.1)  # (N, b, b)

    @classmethod
    def from_args(cls, args: TaskAdapterArgs, ctx) -> "TaskAdapterAttention":
        return cls(tasks=args.tasks, max_len=args.max_len, blocks=args.blocks,
                   task_dim=args.task_dim, **cls.projections(args, ctx))

    def task_prior(self, task_ids: Tensor) -> Tensor:
        """``(B,)`` task ids -> ``(B, max_len, max_len)`` M(z)."""
        z = self.task_embedding(task_ids)  # (B, task_dim)
        gamma, beta = self.gamma(z), self.beta(z)  # (B, N)
        blocks = self.A[None] * gamma[:, :, None, None] + beta[:, :, None, None]  # (B, N, b, b)
        eye = torch.eye(self.blocks, dtype=blocks.dtype, device=blocks.device)  # (N, N)
        B, N, b, _ = blocks.shape
        full = blocks[:, :, :, None, :] * eye[None, :, None, :, None]  # (B, N, b, N, b)
        return full.reshape(B, N * b, N * b)

    def prior(self, scores: Tensor, *, mask, state) -> Tensor:
        B, _, T, S = scores.shape
        task_ids = state.inputs.get("task_ids") if state is not None else None
        if task_ids is None:
            task_ids = torch.zeros(B, dtype=torch.long, device=scores.device)
        M = self.task_prior(task_ids).to(scores.dtype)  # (B, L, L)
        rows = M[:, query_slots(mask, T, S, scores.device), :S]  # (B, T, S)
        return scores + rows[:, None]  # (B, H, T, S): one prior for every head
