"""Structural IR nodes, owned by the core: model, embedding, stack, layer, head."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from ..errors import Span
from .component import Component
from .node import Node

Scalar = int | float | bool | str


class EmbeddingIR(Node):
    """Turns inputs (token ids or image patches) into ``(B, T, d_model)`` vectors."""

    tokens: PositiveInt | None = None  # vocabulary size; None for patch inputs
    patches: Component | None = None  # family "patches": image -> patch vectors
    features: PositiveInt | None = None  # continuous inputs: (B, T, features) floats -> size
    size: PositiveInt  # embedding width E; a projection to d_model follows when E != d_model
    position: Component | None = None  # a position that is *added* to the embeddings
    token_types: NonNegativeInt = 0  # segment embeddings (BERT); 0 = none
    norm: Component | None = None
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    scale: bool = False  # multiply token vectors by sqrt(size) (Vaswani et al. 2017)
    cls_token: bool = False  # prepend a learned [CLS] vector (ViT)
    span: Span | None = Field(default=None, exclude=True, repr=False)


class LayerIR(Node):
    """One layer of a stack, explicit: every override already applied."""

    index: NonNegativeInt
    residual: Literal["pre", "post", "sandwich", "deepnorm"] = "pre"  # deepnorm: Wang et al. 2022
    norm: Component | None  # the norm around each sublayer (None: no norm)
    attention: Component
    cross_attention: Component | None = None
    ffn: Component | None = None  # None: an attention-only layer
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # on each sublayer's output
    shares: NonNegativeInt | None = None  # reuse the parameters of this earlier layer
    no_position: bool = False  # `layer[...] { position = none }`: the stack's position skips it
    # `layer[...] { position = scheme(...) }`: this layer's scheme instead of the stack's
    position: Component | None = None
    span: Span | None = Field(default=None, exclude=True, repr=False)


class HaltingIR(Node):
    """``halting = act(...)``: adaptive computation time over the stack's layers (the
    Universal Transformer, Dehghani et al. 2019; Graves 2016): a per-position halting
    unit, the output a weighted sum of the steps' states, the ponder cost an auxiliary
    loss. The layer count is the maximum number of steps."""

    kind: Literal["act"] = "act"
    threshold: float = Field(default=0.99, gt=0.0, le=1.0)  # halt once sum p > threshold (1 - eps)
    ponder: float = Field(default=0.01, ge=0.0)  # the ponder cost's weight (tau)
    timestep: bool = True  # add the sinusoidal signal of the step to the state (P^t)
    bias: float = 1.0  # the halting unit's initial bias (tensor2tensor's act_halting_bias_init)


class StackIR(Node):
    """An encoder or a decoder: a list of layers with a shared position scheme."""

    role: Literal["encoder", "decoder"]
    causal: bool  # self-attention sees only earlier positions
    position: Component | None = None  # acts inside attention (rope, alibi, t5 bias, ...)
    layers: tuple[LayerIR, ...]
    final_norm: Component | None = None
    halting: HaltingIR | None = None  # adaptive computation time over the layers (None: all run)
    # Memory Transformer (Burtsev et al. 2020): learned tokens prepended to the stack's input
    memory_tokens: NonNegativeInt = 0
    memory_form: Literal["prepend", "bottleneck", "dedicated"] = "prepend"
    span: Span | None = Field(default=None, exclude=True, repr=False)


class HeadIR(Node):
    name: str
    head: Component


class ModelIR(Node):
    """A resolved, validated model: the contract between the language and the builder."""

    name: str
    d_model: PositiveInt
    params: dict[str, Scalar] = Field(default_factory=dict)  # the evaluated parameters
    embedding: EmbeddingIR
    encoder: StackIR | None = None
    decoder: StackIR | None = None
    heads: tuple[HeadIR, ...] = ()
    span: Span | None = Field(default=None, exclude=True, repr=False)

    @property
    def stacks(self) -> tuple[StackIR, ...]:
        return tuple(s for s in (self.encoder, self.decoder) if s is not None)

    @property
    def is_encoder_decoder(self) -> bool:
        return self.encoder is not None and self.decoder is not None

    def hash(self) -> str:
        """The stable content hash: same spec, same hash; spans and comments don't count."""
        return self.content_hash()
