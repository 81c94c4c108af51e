"""Position schemes declared for specs but not implemented yet (``build=None``).

All act on the scores (``acts = "scores"``): the attention computes extra
score terms from q, k and relative embeddings, so they pair only with an
attention that accepts ``scores`` (``relative_xl``, ``two_stream``,
``disentangled``). Their ``param_count`` is exact, so sizes show before
they are built.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import PositiveInt

from txdsl.sdk import ArgError, Dims, PositionArgs

from .common import head_dim_of


class ShawArgs(PositionArgs):
    """Relative key embeddings (Shaw et al. 2018, https://arxiv.org/abs/1803.02155): one
    learned ``head_dim`` vector per clipped distance in [-max_distance, max_distance],
    shared by the heads, giving the score term q_i . a_{clip(j - i)}."""

    acts: ClassVar = "scores"
    max_distance: PositiveInt = 16

    def check(self, dims: Dims) -> None:
        head_dim_of(dims, "shaw")

    def param_count(self, dims: Dims) -> int:
        return (2 * self.max_distance + 1) * head_dim_of(dims, "shaw")


class CopeArgs(PositionArgs):
    """Contextual position encoding, CoPE (Golovneva et al. 2024, https://arxiv.org/abs/2405.18719):
    positions count the keys whose gate sigmoid(q . k) fires; a learned ``head_dim``
    vector per integer position up to ``max_positions``, interpolated between."""

    acts: ClassVar = "scores"
    max_positions: PositiveInt = 64  # npos_max

    def check(self, dims: Dims) -> None:
        head_dim_of(dims, "cope")

    def param_count(self, dims: Dims) -> int:
        return self.max_positions * head_dim_of(dims, "cope")
