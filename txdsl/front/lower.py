"""Lower Lark's parse tree to the surface syntax tree of ``txdsl.front.syntax``.

:func:`lower` parses a :class:`~txdsl.errors.Source` and builds a
:class:`~txdsl.front.syntax.SpecFile`, giving every node the
:class:`~txdsl.errors.Span` of the text it came from (and calls, models and
their bases the span of their name). Literals are decoded here: integers
(``50_257``) to ``int``, floats (``1e-5``) to ``float``, strings with their
escapes. A bad escape or a number out of range is a SpecError at its place.

The parser refuses nesting deeper than ``txdsl.front.parser.MAX_DEPTH`` before
this module sees a tree, so plain recursion (one frame per level) is safe.
"""

from __future__ import annotations

import math
import re
from os import PathLike

from lark import Token, Tree

from ..errors import Source, Span, SpecError
from .parser import parse
from .source import read_source, source_from_text
from .syntax import (Arg, Assign, Binary, Block, Bool, Call, Comment, Expr, Import, Index, LayerBlock,
                     ModelDecl, Name, Number, Selector, Slice, SpecFile, Stmt, String, Unary)

__all__ = ["lower", "lower_expr", "lower_model", "lower_selector", "lower_stmt", "parse_file",
           "parse_text"]

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "pow": "**"}
_UNARY = {"neg": "-", "pos": "+"}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_ESCAPE = re.compile(r"\\(.)")


# ---------------------------------------------------------------- entry points


def lower(source: Source) -> SpecFile:
    """Parse ``source`` (a whole file) into a :class:`SpecFile`, comments included."""
    result = parse(source, "start")
    low = _Lower(source)
    imports, models = [], []
    for child in result.tree.children:
        if child.data == "import_stmt":
            imports.append(low.import_(child))
        else:
            models.append(low.model(child))
    comments = tuple(Comment(t.value, t.line, t.column) for t in result.comments)
    return SpecFile(tuple(imports), tuple(models), source=source, comments=comments)


def lower_model(source: Source) -> ModelDecl:
    """One ``model NAME [extends BASE] { ... }`` (the ``model`` start rule)."""
    return _Lower(source).model(parse(source, "model").tree)


def lower_stmt(source: Source) -> Stmt:
    """One statement: an assignment, a block or a layer block (the ``stmt`` start rule)."""
    return _Lower(source).stmt(parse(source, "stmt").tree)


def lower_selector(source: Source) -> Selector:
    """One layer selector: ``0``, ``-1``, ``2:6``, ``::4`` (the ``selector`` start rule)."""
    return _Lower(source).selector(parse(source, "selector").tree)


def lower_expr(source: Source) -> Expr:
    """One expression (the ``expr`` start rule)."""
    return _Lower(source).expr(parse(source, "expr").tree)


def parse_text(text: str, path: str = "<string>") -> SpecFile:
    """:func:`lower` for a string: ``parse_text('model m { x = 1 }')``."""
    return lower(source_from_text(text, path))


def parse_file(path: str | PathLike[str]) -> SpecFile:
    """:func:`lower` for a file; a missing, unreadable or binary file is a SpecError too."""
    return lower(read_source(path))


# ---------------------------------------------------------------- the lowering


class _Lower:
    def __init__(self, source: Source):
        self.source = source

    def span(self, node: Tree | Token) -> Span:
        if isinstance(node, Token):
            return Span(self.source, node.line, node.column, node.end_line, node.end_column)
        m = node.meta
        return Span(self.source, m.line, m.column, m.end_line, m.end_column)

    # -------------------------------------------------------- file level

    def import_(self, tree: Tree) -> Import:
        return Import(self.string(tree.children[0]), span=self.span(tree))

    def model(self, tree: Tree) -> ModelDecl:
        name, base, *body = tree.children
        return ModelDecl(str(name), None if base is None else str(base), self.body(body),
                         span=self.span(tree), name_span=self.span(name),
                         extends_span=None if base is None else self.span(base))

    # -------------------------------------------------------- statements

    def body(self, children: list) -> tuple[Stmt, ...]:
        out = []
        for child in children:
            out.append(self.stmt(child))
        return tuple(out)

    def stmt(self, tree: Tree) -> Stmt:
        kind = tree.data
        if kind == "assign":
            target, value = tree.children
            return Assign(tuple(str(t) for t in target.children), self.expr(value), span=self.span(tree))
        if kind == "block":
            name, count, *body = tree.children
            return Block(str(name), None if count is None else self.expr(count), self.body(body),
                         span=self.span(tree))
        if kind == "layer_block":
            selectors = tuple(self.selector(c) for c in tree.children if c.data in ("index", "slice"))
            body = [c for c in tree.children if c.data not in ("index", "slice")]
            return LayerBlock(selectors, self.body(body), span=self.span(tree))
        raise ValueError(f"not a statement: {kind}")  # the grammar makes this unreachable

    def selector(self, tree: Tree) -> Selector:
        if tree.data == "index":
            return Index(self.expr(tree.children[0]), span=self.span(tree))
        parts = [None if c is None else self.expr(c) for c in tree.children] + [None]
        return Slice(parts[0], parts[1], parts[2], span=self.span(tree))

    # -------------------------------------------------------- expressions

    def expr(self, tree: Tree) -> Expr:
        kind, span = tree.data, self.span(tree)
        if kind in _BINARY:
            left, right = tree.children
            return Binary(_BINARY[kind], self.expr(left), self.expr(right), span=span)
        if kind in _UNARY:
            return Unary(_UNARY[kind], self.expr(tree.children[0]), span=span)
        if kind == "call":
            name, args = tree.children
            out = []
            for arg in [] if args is None else args.children:
                if arg.data == "named_arg":
                    out.append(Arg(str(arg.children[0]), self.expr(arg.children[1]), span=self.span(arg)))
                else:
                    out.append(Arg(None, self.expr(arg.children[0]), span=self.span(arg)))
            return Call(str(name), tuple(out), span=span, name_span=self.span(name))
        token = tree.children[0] if tree.children else None
        if kind == "name":
            return Name(str(token), span=span)
        if kind == "int":
            return Number(self.integer(token), span=span)
        if kind == "float":
            return Number(self.float_(token), span=span)
        if kind == "string":
            return String(self.string(token), span=span)
        if kind in ("true", "false"):
            return Bool(kind == "true", span=span)
        raise ValueError(f"not an expression: {kind}")  # the grammar makes this unreachable

    def integer(self, token: Token) -> int:
        try:
            return int(token.value)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise SpecError("integer is too long", self.span(token),
                            "integers in a spec are sizes and counts; write at most a few digits") from None

    def float_(self, token: Token) -> float:
        value = float(token.value)
        if math.isinf(value):
            raise SpecError(f"number {token.value} is too large", self.span(token),
                            "the largest float is about 1.8e308")
        return value

    def string(self, token: Token) -> str:
        raw = token.value[1:-1]

        def unescape(m: re.Match) -> str:
            char = m.group(1)
            if char not in _ESCAPES:
                col = token.column + 1 + m.start()  # strings are on one line
                raise SpecError(f"unknown escape '\\{char}' in a string",
                                Span(self.source, token.line, col, token.line, col + 2),
                                'a string may contain \\" \\\\ \\n and \\t; write \\\\ for a backslash')
            return _ESCAPES[char]

        return _ESCAPE.sub(unescape, raw)
