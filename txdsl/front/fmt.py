"""Print a surface syntax tree back as canonical .tx text (what ``txdsl fmt`` writes).

The canonical form: imports first, then models separated by one blank line;
one statement per line, indented by two spaces; ``=`` and binary operators
between single spaces; call arguments as ``name: value`` separated by
``, ``; the fewest parentheses that keep the tree (``a - (b - c)``,
``(-2) ** 2``); floats as Python's ``repr`` without exponent padding (``1e-5``); empty blocks as
``name {}``. Where the source had one or more blank lines between two
statements, one is kept.

Comments come back from :attr:`SpecFile.comments`: a comment on a line of its
own stays before the statement (or closing brace) that follows it, at that
statement's indentation (inside a block before its ``}``: at the block's
body indentation); a comment after code stays at the end of that code's line.
Formatting is idempotent, and the text parses back to an equal tree.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field

from .lower import parse_text
from .syntax import (Assign, Binary, Block, Bool, Call, Comment, Expr, Index, LayerBlock, Name, Number,
                     Slice, SpecFile, Stmt, String, Unary)

__all__ = ["format_expr", "format_spec", "format_text"]

INDENT = "  "

# Binding strength: + - < * / // % < unary - + < ** < atoms. For each binary
# operator: the least strength of its left and right operands that needs no
# parentheses. `**` takes an atom on its left (`(-2) ** 2`) and a unary
# expression on its right (`2 ** -1`); it groups to the right.
_STRENGTH = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2, "**": 4}
_UNARY, _ATOM = 3, 5
_OPERANDS = {1: (1, 2), 2: (2, 3), 4: (5, 3)}


def format_spec(spec: SpecFile) -> str:
    """The canonical text of ``spec``, comments included ("" for an empty spec)."""
    return _Printer(spec).run()


def format_text(text: str, path: str = "<string>") -> str:
    """Parse ``text`` and return its canonical form; syntax errors raise SpecError."""
    return format_spec(parse_text(text, path))


# ---------------------------------------------------------------- expressions


def format_expr(expr: Expr) -> str:
    """One expression, with the fewest parentheses that keep its tree."""
    return _expr(expr, 0)


def _strength(e: Expr) -> int:
    if isinstance(e, Binary):
        return _STRENGTH[e.op]
    if isinstance(e, Unary) or (isinstance(e, Number) and e.value < 0):
        return _UNARY
    return _ATOM


def _expr(e: Expr, need: int) -> str:
    if isinstance(e, Binary):
        left, right = _OPERANDS[_STRENGTH[e.op]]
        text = f"{_expr(e.left, left)} {e.op} {_expr(e.right, right)}"
    elif isinstance(e, Unary):
        text = e.op + _expr(e.operand, _UNARY)
    elif isinstance(e, Call):
        args = []
        for a in e.args:
            args.append(_expr(a.value, 0) if a.name is None else f"{a.name}: {_expr(a.value, 0)}")
        text = f"{e.name}({', '.join(args)})"
    elif isinstance(e, Bool):
        text = "true" if e.value else "false"
    elif isinstance(e, Number):
        text = _number(e.value)
    elif isinstance(e, String):
        text = _quote(e.value)
    elif isinstance(e, Name):
        text = e.id
    else:
        raise TypeError(f"not an expression: {e!r}")
    return f"({text})" if _strength(e) < need else text


def _number(value: int | float) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no .tx spelling")
        # repr round-trips exactly; drop its exponent padding: 1e-05 -> 1e-5, 1e+20 -> 1e20
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m[1].replace("+", "") + m[2], repr(value))
    return str(int(value))


def _quote(value: str) -> str:
    if "\r" in value:
        raise ValueError("a .tx string cannot hold a carriage return")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _selector(s: Index | Slice) -> str:
    if isinstance(s, Index):
        return _expr(s.value, 0)
    parts = ["" if p is None else _expr(p, 0) for p in (s.start, s.stop, s.step)]
    return ":".join(parts if s.step is not None else parts[:2])


# ---------------------------------------------------------------- layout


@dataclass
class _Line:
    indent: int
    text: str
    src: int | None = None  # first source line of the code printed here (None: a comment or blank)
    trailing: list[str] = field(default_factory=list)


def _lines(node) -> tuple[int | None, int | None]:
    span = getattr(node, "span", None)
    if span is None:
        return None, None
    return span.line, span.end_line if span.end_line is not None else span.line


class _Printer:
    def __init__(self, spec: SpecFile):
        self.spec = spec
        self.out: list[_Line] = []
        self.last: int | None = None  # source line where the last printed item ended
        self.fresh = True  # right after '{' or at the top: no blank line here
        text_lines = spec.source.text.split("\n") if spec.source is not None else None
        own, self.trailing = [], []
        for c in sorted(spec.comments, key=lambda c: (c.line, c.column)):
            before = text_lines[c.line - 1][:c.column - 1] if text_lines and c.line <= len(text_lines) else ""
            (own if not before.strip() else self.trailing).append(c)
        self.pending = own  # own-line comments not printed yet, in source order
        self.next = 0

    def run(self) -> str:
        for imp in self.spec.imports:
            lo, hi = _lines(imp)
            self.flush(lo, 0)
            self.item(lo)
            self.emit(0, f"import {_quote(imp.path)}", lo, hi)
        for model in self.spec.models:
            lo, hi = _lines(model)
            if self.out:  # one blank line before each model (and its comments)
                self.out.append(_Line(0, ""))
                self.fresh = True
            self.flush(lo, 0)
            self.item(lo)
            head = f"model {model.name}" + (f" extends {model.extends}" if model.extends else "")
            self.block(head, model.body, lo, hi, 0)
        self.flush(None, 0, everything=True)
        self.attach_trailing()
        return "".join(INDENT * l.indent + l.text + "".join("  " + t for t in l.trailing) + "\n"
                       if l.text or l.trailing else "\n" for l in self.out)

    # -------------------------------------------------------- items

    def item(self, first: int | None) -> None:
        """Before a statement or comment starting at source line ``first``: a blank line if there was one."""
        if not self.fresh and first is not None and self.last is not None and first > self.last + 1:
            self.out.append(_Line(0, ""))
        self.fresh = False

    def emit(self, indent: int, text: str, lo: int | None, hi: int | None) -> None:
        self.out.append(_Line(indent, text, lo))
        if hi is not None:
            self.last = hi

    def flush(self, before: int | None, indent: int, everything: bool = False) -> None:
        """Print the own-line comments that come before source line ``before``."""
        while self.next < len(self.pending):
            c: Comment = self.pending[self.next]
            if not everything and (before is None or c.line >= before):
                return
            self.item(c.line)
            self.emit(indent, c.text.rstrip(), None, c.line)
            self.next += 1

    def stmt(self, s: Stmt, indent: int) -> None:
        lo, hi = _lines(s)
        if isinstance(s, Assign):
            self.flush(lo, indent)
            self.item(lo)
            self.fresh = True  # comments from inside the statement go just before it
            self.flush(None if hi is None else hi + 1, indent)
            self.fresh = False
            self.emit(indent, f"{'.'.join(s.target)} = {_expr(s.value, 0)}", lo, hi)
            return
        self.flush(lo, indent)
        self.item(lo)
        if isinstance(s, Block):
            head = s.name if s.count is None else f"{s.name}({_expr(s.count, 0)})"
        elif isinstance(s, LayerBlock):
            head = f"layer[{', '.join(_selector(sel) for sel in s.selectors)}]"
        else:
            raise TypeError(f"not a statement: {s!r}")
        self.block(head, s.body, lo, hi, indent)

    def block(self, head: str, body: tuple[Stmt, ...], lo: int | None, hi: int | None, indent: int) -> None:
        inner = (hi is not None and self.next < len(self.pending) and self.pending[self.next].line < hi)
        if not body and not inner:
            self.emit(indent, head + " {}", lo, hi)
            return
        self.emit(indent, head + " {", lo, lo)
        self.fresh = True
        for s in body:
            self.stmt(s, indent + 1)
        self.flush(hi, indent + 1)
        self.emit(indent, "}", hi, hi)
        self.fresh = False

    def attach_trailing(self) -> None:
        """Put each end-of-line comment on the last printed line whose code starts at or before it."""
        code = [line for line in self.out if line.src is not None]
        starts = [line.src for line in code]
        for c in self.trailing:
            i = bisect.bisect_right(starts, c.line) - 1
            if i >= 0:
                code[i].trailing.append(c.text.rstrip())
            else:  # no code before it (a tree without spans): print it on its own line
                self.out.append(_Line(0, c.text.rstrip()))
