"""Arguments of the kinds that draw random blocks or unite patterns: ``random``,
``sparse`` (any union: BigBird, Star-Transformer) and ``longformer`` (local + global with
separate global projections)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, NonNegativeInt, PositiveInt

from txdsl.sdk import ArgError, Dims
from txdsl.sdk.args import linear_params

from . import patterns as P
from .args import WINDOW, _GlobalFields, SparseBase

DEFAULT_CONTEXT = 4096  # random tables cover this many positions when the spec sets no context


class _RandomFields(SparseBase):
    random: NonNegativeInt = Field(default=0, description="random key blocks per query block")
    random_block: PositiveInt | None = Field(default=None, description=(
        "the random blocks' length (default: block, else 16)"))
    seed: int = Field(default=0, description="the random table's seed: the same table for "
                      "every build of the spec (and for every head and row)")

    def random_parts(self, dims: Dims) -> list[Any]:
        if not self.random:
            return []
        rb = self.random_block or getattr(self, "block", None) or 16
        n = -(-(dims.context or DEFAULT_CONTEXT) // rb)
        return [P.Random(self.random, rb, self.seed, n)]

    def keys_per_query(self, seq_len: int) -> int:
        return self.random * (self.random_block or getattr(self, "block", None) or 16)


class RandomArgs(_RandomFields):
    """Random attention (Zaheer et al. 2020, BigBird, https://arxiv.org/abs/2007.14062):
    each query block sees ``random`` key blocks drawn once per build (seeded)."""

    example: ClassVar[dict[str, Any]] = {"random": 1, "random_block": 2}

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if self.random < 1:
            raise ArgError("random (0) must be at least 1: no key would be seen",
                           arg="random", hint="random: 1 or more")

    def parts(self, dims: Dims) -> list[Any]:
        return self.random_parts(dims)


class SparseArgs(_GlobalFields, _RandomFields):
    """A union of position patterns (Lin et al. 2021 §4.1.1, https://arxiv.org/abs/2106.04554):
    each argument given adds its pattern: ``window`` (local, with ``dilation``, ``ring``), ``block``/``reach``
    (block-local), ``global_*`` and ``positions`` (global), ``random`` (random blocks).
    BigBird (Zaheer et al. 2020) is ``block + reach: 1 + global_tokens/global_last +
    random``; Star-Transformer (Guo et al. 2019, https://arxiv.org/abs/1902.09113)
    ``window: 2, ring: true, global_tokens: 1``."""

    example: ClassVar[dict[str, Any]] = {"window": 2, "global_tokens": 1}
    window: PositiveInt | None = Field(default=None, description=WINDOW)
    dilation: PositiveInt = Field(default=1, description="keep every dilation-th key of the window")
    ring: bool = Field(default=False, description="the window wraps around (bidirectional only)")
    block: PositiveInt | None = Field(default=None, description="block-local: block length")
    reach: NonNegativeInt = Field(default=0, description="neighbouring blocks seen on each side")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if not self.parts(dims):
            raise ArgError("sparse(...) names no pattern: every query would see nothing",
                           hint="give window, block, global_tokens, positions or random")

    def check_use(self, *, causal: bool, cross: bool) -> None:
        super().check_use(causal=causal, cross=cross)
        if self.ring and causal:
            raise ArgError("a ring (ring: true) needs the future: not in a causal stack",
                           arg="ring", hint="drop ring, or use it in an encoder")

    def parts(self, dims: Dims) -> list[Any]:
        out: list[Any] = []
        if self.window is not None:
            out.append(P.Local(self.window, self.dilation, -1 if self.ring else 0))
        if self.block is not None:
            out.append(P.Block(self.block, self.reach))
        return out + self.globals() + self.random_parts(dims)

    def keys_per_query(self, seq_len: int) -> int:
        n = 2 * self.window - 1 if self.window else 0
        n += (2 * self.reach + 1) * self.block if self.block else 0
        return n + _GlobalFields.keys_per_query(self, seq_len) + \
            _RandomFields.keys_per_query(self, seq_len)


class LongformerArgs(_GlobalFields):
    """Longformer attention (Beltagy et al. 2020, https://arxiv.org/abs/2004.05150): a
    sliding window plus global positions, where global queries use their own projections
    (``query_global``, ``key_global``, ``value_global``) and see every key. Global positions
    come from ``global_tokens``/``positions`` and the model input ``global_attention_mask``.
    HF's ``attention_window`` w (even) is ``window: w / 2 + 1``. Decoding keeps a ring
    buffer of the window plus the leading ``global_tokens`` (their keys and values); the
    global queries themselves must be in the prompt."""

    example: ClassVar[dict[str, Any]] = {"window": 2}
    # decoding (a causal stack): a ring buffer of the window with the leading
    # global_tokens kept as sinks; a global query must come in a chunk starting at 0
    window: PositiveInt = Field(description=WINDOW)

    def parts(self, dims: Dims) -> list[Any]:
        return [P.Local(self.window)] + self.globals()

    def keys_per_query(self, seq_len: int) -> int:
        return 2 * self.window - 1 + _GlobalFields.keys_per_query(self, seq_len)

    def param_count(self, dims: Dims) -> int:
        hd, d = self.head_size(dims), dims.width
        extra = linear_params(d, self.heads * hd, self.bias) + \
            2 * linear_params(d, self.n_kv_heads() * hd, self.bias)
        return super().param_count(dims) + extra
