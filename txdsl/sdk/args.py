"""Argument base classes for each component family, with checks and cost models.

A registered component's arguments are a pydantic model (``extra="forbid"``,
frozen) derived from one of these bases. Besides types, a model may define:

- ``check(dims)``: rules that need the model's dimensions; raise
  :class:`ArgError` naming the argument, quoting the values;
- ``param_count(dims)``: the exact number of parameters the built module has;
- ``flops_per_token(dims, seq_len)``: forward FLOPs per token (a multiply-add
  counts 2).
- ``tp_plan(dims, tp)``: how the built module's parameters split across
  tensor-parallel ranks (:mod:`txdsl.sdk.sharding`; ``None``: replicated).

Estimates (``txdsl show``) come from these, without allocating anything; a
test builds every registered component and compares ``param_count`` with the
module's real count.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class ArgError(ValueError):
    """A component's arguments don't fit the model: reported at ``arg``'s span."""

    def __init__(self, message: str, arg: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.hint = hint


class Dims(BaseModel):
    """The dimensions a component is built for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    d_model: PositiveInt  # the model width
    width: PositiveInt  # the width this component acts on (E inside a factorized embedding)
    vocab: PositiveInt | None = None
    embed_size: PositiveInt  # the token embedding width E (== d_model unless factorized)
    context: PositiveInt | None = None  # longest sequence the model is meant for, if known
    heads: PositiveInt | None = None  # for stack-level positions: the attention's heads
    head_dim: PositiveInt | None = None  # ... and its head size (RoPE rotates head_dim)
    layers: PositiveInt | None = None  # for stack-level positions: the stack's layer count
    # inside a layer: its residual scheme, for a component that keeps a stream of its own
    # beside the layer's (Luna's packed context normalises as the layer does)
    residual: Literal["pre", "post", "sandwich", "deepnorm"] | None = None


class ComponentArgs(BaseModel):
    """Base of every component's arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: ClassVar[str] = ""

    def check(self, dims: Dims) -> None:
        """Raise :class:`ArgError` if these arguments can't work with ``dims``."""

    def param_count(self, dims: Dims) -> int:
        raise NotImplementedError(f"{type(self).__name__} has no parameter count")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        raise NotImplementedError(f"{type(self).__name__} has no FLOP count")

    def tp_plan(self, dims: Dims, tp: int) -> Any:
        """How the built module's parameters shard across ``tp`` tensor-parallel ranks: a
        :class:`txdsl.sdk.sharding.TPPlan`, or ``None`` (no declaration: replicated)."""
        return None


def linear_params(d_in: int, d_out: int, bias: bool) -> int:
    return d_in * d_out + (d_out if bias else 0)


# ------------------------------------------------------------------ attention


class AttentionArgs(ComponentArgs):
    """Multi-head attention; ``kv_heads`` < ``heads`` gives grouped-query (GQA),
    ``kv_heads: 1`` multi-query attention (Shazeer 2019; Ainslie et al. 2023)."""

    family: ClassVar[str] = "attention"
    # Where a position scheme may act on this attention (see PositionArgs.acts).
    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})
    # Uses this kind can't serve, each with the reason a user reads: "causal" (in a causal
    # stack), "bidirectional" (in a non-causal one), "cross" (as cross-attention), "decode"
    # (with a decode state), "padding" (with key padding). Validation refuses the first
    # three at the attention's span; the contract suite skips the checks they exclude.
    unsupported: ClassVar[dict[str, str]] = {}
    # Arguments besides ``heads`` that the contract suite and ``txdsl verify`` build this
    # kind with (a kind with a required argument must give one), e.g. {"window": 4}.
    example: ClassVar[dict[str, Any]] = {}
    # Residual attention scores (RealFormer): ``forms_scores`` kinds hand their pre-softmax
    # scores to the next layer (``StackState.scores``); a ``reads_scores`` kind adds them, so
    # validation refuses it after a layer whose attention doesn't form them (e.g. SDPA's).
    forms_scores: ClassVar[bool] = False
    reads_scores: ClassVar[bool] = False

    heads: PositiveInt = Field(description="number of attention (query) heads")
    kv_heads: PositiveInt | None = Field(
        default=None, description="key/value heads: fewer than heads is grouped-query "
        "attention, 1 is multi-query; none: as many as heads")
    head_dim: PositiveInt | None = None  # default d_model // heads
    bias: bool = True  # biases on the q, k, v and output projections
    scale: float | None = None  # score scale; default 1/sqrt(head_dim) (T5 uses 1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # on attention weights

    def check_use(self, *, causal: bool, cross: bool) -> None:
        """Raise :class:`ArgError` if this attention can't be used so: in a causal (or
        bidirectional) stack, as cross-attention. The default reads :attr:`unsupported`."""
        use = "cross" if cross else "causal" if causal else "bidirectional"
        if use in self.unsupported:
            where = {"cross": "as cross-attention", "causal": "in a causal stack",
                     "bidirectional": "in a bidirectional (non-causal) stack"}[use]
            raise ArgError(f"can't be used {where}: {self.unsupported[use]}")

    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    def out_proj_bias(self) -> bool:
        """Whether the output projection has a bias: ``bias``, unless the kind has an
        ``out_bias`` argument that says otherwise (``full``: Qwen2's q/k/v-only biases)."""
        out_bias = getattr(self, "out_bias", None)
        return self.bias if out_bias is None else out_bias

    def head_size(self, dims: Dims) -> int:
        return self.head_dim or dims.width // self.heads

    def check(self, dims: Dims) -> None:
        if self.head_dim is None and dims.width % self.heads:
            raise ArgError(f"d_model ({dims.width}) is not divisible by heads ({self.heads})",
                           arg="heads", hint="pick heads dividing d_model, or set head_dim")
        if self.heads % self.n_kv_heads():
            raise ArgError(f"heads ({self.heads}) is not divisible by kv_heads ({self.kv_heads})",
                           arg="kv_heads", hint="kv_heads must divide heads (1 = multi-query)")

    def param_count(self, dims: Dims) -> int:
        hd, d = self.head_size(dims), dims.width
        q = linear_params(d, self.heads * hd, self.bias)
        kv = 2 * linear_params(d, self.n_kv_heads() * hd, self.bias)
        out = linear_params(self.heads * hd, d, self.out_proj_bias())
        return q + kv + out

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd = self.head_size(dims)
        proj = 2 * (self.param_count(dims))  # weights dominate; biases add a rounding error
        scores = 2 * 2 * self.heads * hd * seq_len  # q.k^T and weights.v over seq_len keys
        return proj + scores

    def kv_cache_per_token(self, dims: Dims) -> int:
        """Cached elements per token per layer (keys and values)."""
        return 2 * self.n_kv_heads() * self.head_size(dims)

    def state_elements(self, dims: Dims, seq_len: int) -> int:
        """Elements of one layer's decode state for one sequence of ``seq_len`` tokens.

        Exact attention keeps every key and value (``kv_cache_per_token * seq_len``);
        a window keeps ``window`` of them, linear attention a constant-size state:
        such kinds override this, and ``txdsl show`` reports it."""
        return self.kv_cache_per_token(dims) * seq_len

    def heads_tp_plan(self, tp: int = 1) -> Any:
        """The heads split (:func:`txdsl.sdk.sharding.heads_split`) over ``tp`` ranks for a
        kind built on the base :class:`~txdsl.sdk.attention.Attention` whose ``attend`` acts
        head by head; such a kind returns it from ``tp_plan``."""
        from .sharding import heads_split

        return heads_split(self.heads, self.n_kv_heads(), tp)


# ---------------------------------------------------------------- the others


class NormArgs(ComponentArgs):
    family: ClassVar[str] = "norm"
    eps: float = Field(default=1e-5, gt=0.0)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 5 * dims.width

    def tp_plan(self, dims: Dims, tp: int) -> Any:
        from .sharding import REPLICATED

        return REPLICATED  # a norm's input is whole on every rank (no sequence parallelism)


class FFNArgs(ComponentArgs):
    family: ClassVar[str] = "ffn"
    hidden: PositiveInt = Field(description="width of the hidden layer")
    bias: bool = Field(default=True, description="biases on the feed-forward projections")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # after the activation

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * self.param_count(dims)


class PositionArgs(ComponentArgs):
    """Where a position scheme acts (Architecture, "Where positions act"):

    - ``embedding``: added to the token embeddings (sinusoidal, learned);
    - ``qk``: a transform of queries and keys (RoPE);
    - ``bias``: an additive bias on the attention scores (ALiBi, T5 buckets);
    - ``scores``: extra score terms from q, k and relative embeddings
      (DeBERTa, Transformer-XL).
    """

    family: ClassVar[str] = "position"
    acts: ClassVar[Literal["embedding", "qk", "bias", "scores"]] = "embedding"

    def param_count(self, dims: Dims) -> int:
        return 0

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 0

    def tp_plan(self, dims: Dims, tp: int) -> Any:
        from .sharding import REPLICATED

        return REPLICATED  # tables are small; a bias is sliced to each rank's heads at use


class HeadArgs(ComponentArgs):
    family: ClassVar[str] = "head"


class PatchesArgs(ComponentArgs):
    """Turns images ``(B, C, H, W)`` into patch vectors ``(B, N, E)`` (ViT)."""

    family: ClassVar[str] = "patches"

    def num_patches(self) -> int:
        raise NotImplementedError
