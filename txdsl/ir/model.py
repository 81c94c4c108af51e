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
    span: Span | None = Field(default=None, exclude=True, repr=False)


class StackIR(Node):
    """An encoder or a decoder: a list of layers with a shared position scheme."""

    role: Literal["encoder", "decoder"]
    causal: bool  # self-attention sees only earlier positions
    position: Component | None = None  # acts inside attention (rope, alibi, t5 bias, ...)
    layers: tuple[LayerIR, ...]
    final_norm: Component | None = None
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
