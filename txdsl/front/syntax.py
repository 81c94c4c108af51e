"""The surface syntax tree: what a .tx file says, before any meaning is given.

``txdsl.front.lower`` builds these nodes from Lark's parse tree; ``txdsl.front.resolve``
gives them meaning (imports, extends, expressions, per-layer overrides);
``txdsl.front.fmt`` prints them back as canonical text. Nodes are frozen
dataclasses; every node keeps its :class:`~txdsl.errors.Span`, which takes no
part in equality, so two spellings of the same spec compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..errors import Source, Span


def _span() -> Span:  # keyword-only span, excluded from == and repr
    return field(default=None, compare=False, repr=False, kw_only=True)  # type: ignore[return-value]


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Number:
    value: int | float
    span: Span = _span()


@dataclass(frozen=True)
class String:
    value: str
    span: Span = _span()


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span = _span()


@dataclass(frozen=True)
class Name:
    """A bare name: a parameter reference, or else a symbol (``gelu``, ``pre``, ``none``)."""

    id: str
    span: Span = _span()


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "+"
    operand: "Expr"
    span: Span = _span()


@dataclass(frozen=True)
class Binary:
    op: str  # "+", "-", "*", "/", "//", "%", "**"
    left: "Expr"
    right: "Expr"
    span: Span = _span()


@dataclass(frozen=True)
class Arg:
    """One argument of a call: ``name: value`` or, for min/max, a bare value."""

    name: str | None
    value: "Expr"
    span: Span = _span()


@dataclass(frozen=True)
class Call:
    """``kind(arg: value, ...)`` (a component) or ``min(a, b)`` / ``max(a, b)``."""

    name: str
    args: tuple[Arg, ...]
    span: Span = _span()
    name_span: Span = _span()


Expr = Union[Number, String, Bool, Name, Unary, Binary, Call]


# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class Assign:
    """``target = value``; a dotted target (``attention.window``) sets one argument."""

    target: tuple[str, ...]
    value: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Block:
    """``name { ... }`` or ``name(count) { ... }``: embedding, heads, encoder, decoder."""

    name: str
    count: Expr | None
    body: tuple["Stmt", ...]
    span: Span = _span()


@dataclass(frozen=True)
class Index:
    value: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Slice:
    start: Expr | None
    stop: Expr | None
    step: Expr | None
    span: Span = _span()


Selector = Union[Index, Slice]


@dataclass(frozen=True)
class LayerBlock:
    """``layer[0] { ... }``, ``layer[2:6]``, ``layer[3::4]``, ``layer[0, -1]``."""

    selectors: tuple[Selector, ...]
    body: tuple["Stmt", ...]
    span: Span = _span()


Stmt = Union[Assign, Block, LayerBlock]


# ---------------------------------------------------------------- file level


@dataclass(frozen=True)
class Import:
    path: str
    span: Span = _span()


@dataclass(frozen=True)
class ModelDecl:
    name: str
    extends: str | None
    body: tuple[Stmt, ...]
    span: Span = _span()
    name_span: Span = _span()
    extends_span: Span | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Comment:
    """A ``#`` comment, kept only so ``txdsl fmt`` can print it back."""

    text: str  # including the leading '#'
    line: int
    column: int


@dataclass(frozen=True)
class SpecFile:
    imports: tuple[Import, ...]
    models: tuple[ModelDecl, ...]
    source: Source = field(default=None, compare=False, repr=False, kw_only=True)  # type: ignore[assignment]
    comments: tuple[Comment, ...] = field(default=(), compare=False, repr=False, kw_only=True)
