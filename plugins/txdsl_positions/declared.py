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


class RelativeXLPositionArgs(PositionArgs):
    """Transformer-XL sinusoidal relative embeddings (Dai et al. 2019,
    https://arxiv.org/abs/1901.02860); projected by the attention's ``r_net``.
    No parameters."""

    acts: ClassVar = "scores"


class DisentangledPositionArgs(PositionArgs):
    """DeBERTa relative position embeddings (He et al. 2021, https://arxiv.org/abs/2006.03654).

    As HF ``DebertaV2Encoder``: ``rel_embeddings`` = ``nn.Embedding(2 * buckets,
    d_model)`` with log-bucketed relative positions (``buckets`` > 0, v2/v3's
    ``position_buckets``), else ``2 * max_relative_positions`` rows (-1: the
    model's context, HF ``max_position_embeddings``); ``norm`` (v3's
    ``norm_rel_ebd: layer_norm``) adds a LayerNorm over them. Shared by all
    layers of the stack.
    """

    acts: ClassVar = "scores"
    buckets: int = 256  # HF position_buckets; <= 0: no bucketing
    max_relative_positions: int = -1  # < 1: the model's context
    norm: bool = True

    def _rows(self, dims: Dims) -> int:
        if self.buckets > 0:
            return 2 * self.buckets
        if self.max_relative_positions >= 1:
            return 2 * self.max_relative_positions
        if dims.context is None:
            raise ArgError("disentangled positions without buckets need max_relative_positions "
                           "or the model's context", arg="max_relative_positions",
                           hint="set max_relative_positions, or context in the model")
        return 2 * dims.context

    def check(self, dims: Dims) -> None:
        self._rows(dims)

    def param_count(self, dims: Dims) -> int:
        return self._rows(dims) * dims.d_model + (2 * dims.d_model if self.norm else 0)


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
