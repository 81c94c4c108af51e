"""Arguments of the position-based sparse attention kinds, and their cost models.

Every kind is exact softmax attention over the keys its pattern allows; the
pattern is built from the arguments by :meth:`SparseBase.pattern` (atoms in
:mod:`.patterns`). ``window`` counts the keys on the past side of a query,
the query itself included: causal, a query sees ``window`` keys
(``0 <= q - kv < window``); bidirectional, ``2 * window - 1``
(``|q - kv| < window``). Hugging Face Longformer's ``attention_window`` (even)
counts both sides without the query: ``attention_window = 2 * (window - 1)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, NonNegativeInt, PositiveInt

from txdsl.sdk import ArgError, AttentionArgs, Dims

from . import patterns as P

WINDOW = "keys on the past side of a query, the query included (causal: it sees `window` keys; " \
         "bidirectional: |q - kv| < window, 2*window - 1 keys; HF Longformer's " \
         "attention_window = 2*(window - 1))"


def parse_positions(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("|") if p.strip())


class SparseBase(AttentionArgs):
    """Exact attention restricted to a position pattern (Lin et al. 2021, §4.1.1)."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})
    chunk: PositiveInt | None = Field(default=None, description=(
        "tile size of the `blocked` implementation (default: the pattern's block; for a "
        "window, the power of two >= (window - 1) * dilation / 2 within 16..128; else "
        "random_block, else 32)"))

    def parts(self, dims: Dims) -> list[Any]:
        """The atoms of the pattern (:mod:`.patterns`), united."""
        raise NotImplementedError

    def tile(self) -> int:
        """Query tile of the ``blocked`` kernel: a block, or about half a window's reach
        (its band is then 2 tiles causal, 3 bidirectional, wasting < 1/2 of the scores)."""
        if self.chunk or getattr(self, "block", None):
            return self.chunk or self.block  # type: ignore[attr-defined]
        window = getattr(self, "window", None) or getattr(self, "stride", None)
        if window:
            span = (window - 1) * getattr(self, "dilation", 1)
            return min(128, max(16, 1 << max(0, (span + 1) // 2 - 1).bit_length()))
        return getattr(self, "random_block", None) or 32

    def keys_per_query(self, seq_len: int) -> int:
        """An upper bound on the keys a query sees (bidirectional), for the FLOP count."""
        return seq_len

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return super().flops_per_token(dims, max(1, min(seq_len, self.keys_per_query(seq_len))))

    def reach_and_sinks(self, dims: Dims) -> tuple[int | None, int]:
        """How far back a query sees and the leading slots every query sees (the ring state)."""
        parts = self.parts(dims)
        union = P.Union(tuple(parts))
        return union.reach, union.sinks

    def ring_slots(self, dims: Dims) -> int | None:
        """Slots of the bounded decode state (sinks + window + one scratch), or ``None``."""
        reach, sinks = self.reach_and_sinks(dims)
        return None if reach is None else sinks + reach + 1

    def state_elements(self, dims: Dims, seq_len: int) -> int:
        slots = self.ring_slots(dims)
        if slots is None:
            return super().state_elements(dims, seq_len)
        return self.kv_cache_per_token(dims) * slots  # bounded: independent of seq_len


class _Window(SparseBase):
    window: PositiveInt = Field(description=WINDOW)

    def keys_per_query(self, seq_len: int) -> int:
        return 2 * self.window - 1


class LocalArgs(_Window):
    """Sliding-window attention (Beltagy et al. 2020, Longformer,
    https://arxiv.org/abs/2004.05150): a query sees the keys within ``window``."""

    example: ClassVar[dict[str, Any]] = {"window": 3}
    ring: bool = Field(default=False, description=(
        "distances wrap around the sequence (Star-Transformer's ring, Guo et al. 2019); "
        "bidirectional only"))
    unsupported: ClassVar[dict[str, str]] = {}

    def check_use(self, *, causal: bool, cross: bool) -> None:
        super().check_use(causal=causal, cross=cross)
        if self.ring and causal:
            raise ArgError("a ring (ring: true) wraps the last position onto the first: it "
                           "needs the future, so it can't be used in a causal stack",
                           arg="ring", hint="drop ring, or use it in an encoder")

    def parts(self, dims: Dims) -> list[Any]:
        return [P.Local(self.window, ring_length=-1 if self.ring else 0)]


class DilatedArgs(_Window):
    """Dilated sliding window (Beltagy et al. 2020, §3.1, https://arxiv.org/abs/2004.05150): every ``dilation``-th key within
    ``window * dilation`` positions (``window`` keys on the past side)."""

    example: ClassVar[dict[str, Any]] = {"window": 2, "dilation": 2}
    dilation: PositiveInt = Field(description="keep every dilation-th key (1 = local)")

    def parts(self, dims: Dims) -> list[Any]:
        return [P.Local(self.window, dilation=self.dilation)]


class _Factorised(SparseBase):
    stride: PositiveInt = Field(description="Child et al.'s l: the block length / stride")
    merge: bool = Field(default=False, description=(
        "false: half the heads use each of the two patterns (Child et al.'s factorised "
        "heads); true: every head sees their union (the 'merged' head)"))

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if not self.merge and self.heads % 2:
            raise ArgError(f"factorised heads split heads ({self.heads}) in two halves: "
                           "heads must be even", arg="heads", hint="use an even number of "
                           "heads, or merge: true")

    def two(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def parts(self, dims: Dims) -> list[Any]:
        a, b = self.two()
        return [P.Union((a, b))] if self.merge else [P.PerHead(a, b, self.heads // 2)]

    def keys_per_query(self, seq_len: int) -> int:
        return self.stride + seq_len // self.stride + 1


class StridedArgs(_Factorised):
    """Sparse Transformer, strided (Child et al. 2019, https://arxiv.org/abs/1904.10509):
    head A sees ``0 <= |q - kv| < stride``, head B ``(q - kv) % stride == 0``."""

    example: ClassVar[dict[str, Any]] = {"stride": 3}

    def two(self):
        return P.Local(self.stride), P.Strided(self.stride)


class FixedArgs(_Factorised):
    """Sparse Transformer, fixed (Child et al. 2019, https://arxiv.org/abs/1904.10509): head A sees its own ``stride``-long
    block, head B the last ``summary`` positions of every block."""

    example: ClassVar[dict[str, Any]] = {"stride": 3}
    summary: PositiveInt = Field(default=1, description="Child et al.'s c: summary positions "
                                 "at the end of each block")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if self.summary > self.stride:
            raise ArgError(f"summary ({self.summary}) exceeds stride ({self.stride})",
                           arg="summary", hint="summary counts positions of one block")

    def two(self):
        return P.Block(self.stride), P.Summary(self.stride, self.summary)


class BlockArgs(SparseBase):
    """Block-local attention (Qiu et al. 2019, https://arxiv.org/abs/1911.02972): a query
    sees the keys of its block and of ``reach`` blocks on each side."""

    example: ClassVar[dict[str, Any]] = {"block": 3}
    block: PositiveInt = Field(description="block length in tokens")
    reach: NonNegativeInt = Field(default=0, description="neighbouring blocks seen on each "
                                  "side (BigBird's sliding blocks: 1)")

    def parts(self, dims: Dims) -> list[Any]:
        return [P.Block(self.block, self.reach)]

    def keys_per_query(self, seq_len: int) -> int:
        return (2 * self.reach + 1) * self.block


class _GlobalFields(SparseBase):
    global_tokens: NonNegativeInt = Field(default=0, description="the first n positions are "
                                          "global: they see all keys and all queries see them")
    global_last: NonNegativeInt = Field(default=0, description="the last n positions are global "
                                        "(BigBird's last block); bidirectional only")
    positions: str = Field(default="", description="more global positions, '|'-separated "
                           "(\"0|7\"); a model input global_attention_mask (B, T) adds more")

    def check_use(self, *, causal: bool, cross: bool) -> None:
        super().check_use(causal=causal, cross=cross)
        if causal and self.global_last:
            raise ArgError(f"global_last ({self.global_last}) names positions at the end of the "
                           "sequence, which a causal stack hasn't seen yet",
                           arg="global_last", hint="use global_tokens in a causal stack")

    def globals(self) -> list[Any]:
        if not (self.global_tokens or self.global_last or self.positions):
            return []
        return [P.Global(self.global_tokens, self.global_last, 0,
                         parse_positions(self.positions))]

    def keys_per_query(self, seq_len: int) -> int:
        return self.global_tokens + self.global_last + len(parse_positions(self.positions))


class GlobalArgs(_GlobalFields):
    """Global attention alone (Beltagy et al. 2020; Zaheer et al. 2020;
    https://arxiv.org/abs/2004.05150, https://arxiv.org/abs/2007.14062): global positions see
    all keys and are seen by all queries; other queries see only global keys (and, with a
    runtime ``global_attention_mask``, its positions)."""

    example: ClassVar[dict[str, Any]] = {"global_tokens": 2}

    def parts(self, dims: Dims) -> list[Any]:
        return self.globals() or [P.Global(0)]
