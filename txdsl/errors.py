"""Spec errors: one exception family carrying a source span, and its rendering.

Every mistake in a spec, whatever stage finds it, becomes a :class:`SpecError`
with a :class:`Span`. The CLI renders it as::

    specs/x.tx:4:17: error: unknown attention 'linfomer'
        attention = linfomer(heads: 8)
                    ^~~~~~~~
    hint: did you mean 'linformer'? (installed: full, linformer, local)

Stages that can find several independent mistakes collect them in an
:class:`ErrorSink` and raise them together as one :class:`SpecErrors`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence


@dataclass(frozen=True, eq=False)
class Source:
    """The text of one spec file (or string), kept so errors can quote it."""

    path: str
    text: str

    def line(self, n: int) -> str:
        lines = self.text.split("\n")  # as the lexer counts lines (not str.splitlines)
        return lines[n - 1].rstrip("\r") if 1 <= n <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A region of a source: 1-based line and column, end exclusive."""

    source: Source = field(compare=False, repr=False)
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    @property
    def path(self) -> str:
        return self.source.path

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class SpecError(Exception):
    """A mistake in a spec, with where it is and, where one helps, a hint.

    Attributes: ``path``, ``line``, ``column`` (1-based; ``None`` when the
    error concerns a whole file), ``message``, ``hint``, ``span``.
    """

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None,
                 *, path: str | None = None):
        self.message = message
        self.span = span
        self.hint = hint
        self.path = span.path if span is not None else path
        self.line = span.line if span is not None else None
        self.column = span.column if span is not None else None
        super().__init__(self.render())

    @property
    def errors(self) -> list["SpecError"]:
        return [self]

    def location(self) -> str:
        if self.path is None:
            return "<spec>"
        if self.line is None:
            return self.path
        return f"{self.path}:{self.line}:{self.column}"

    def render(self) -> str:
        """``path:line:col: error: message``, the line, a caret, the hint."""
        out = [f"{self.location()}: error: {self.message}"]
        if self.span is not None:
            text = self.span.source.line(self.span.line)
            if text:
                shown = text.expandtabs(1)
                out.append(f"    {shown}")
                col = self.span.column
                width = 1
                if self.span.end_line == self.span.line and self.span.end_column:
                    width = max(1, self.span.end_column - col)
                width = min(width, max(1, len(shown) - col + 1))
                out.append("    " + " " * (col - 1) + "^" + "~" * (width - 1))
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


class SpecErrors(SpecError):
    """Several independent spec errors found by one stage, reported together."""

    def __init__(self, errors: Sequence[SpecError]):
        if not errors:
            raise ValueError("SpecErrors needs at least one error")
        self._errors = list(errors)
        first = self._errors[0]
        super().__init__(first.message, first.span, first.hint, path=first.path)

    @property
    def errors(self) -> list[SpecError]:
        return list(self._errors)

    def render(self) -> str:
        return "\n\n".join(e.render() for e in self._errors)


class ErrorSink:
    """Collects errors of one stage; :meth:`check` raises them together.

    Identical errors (same place, same message) are kept once, so a mistake
    in a stack body shared by 12 layers is reported once, not 12 times.
    """

    def __init__(self) -> None:
        self._errors: list[SpecError] = []
        self._seen: set[tuple] = set()

    def add(self, error: SpecError) -> None:
        for e in error.errors:
            key = (e.path, e.line, e.column, e.message)
            if key not in self._seen:
                self._seen.add(key)
                self._errors.append(e)

    def __bool__(self) -> bool:
        return bool(self._errors)

    def check(self, *, in_file_order: bool = False) -> None:
        """Raise what was collected, if anything; ``in_file_order`` sorts by place
        (files in the order they first appear), for errors several stages found."""
        errors = self._errors
        if in_file_order:
            files: dict[str | None, int] = {}
            for e in errors:
                files.setdefault(e.path, len(files))
            errors = sorted(errors, key=lambda e: (files[e.path], e.line or 0, e.column or 0))
        if errors:
            raise errors[0] if len(errors) == 1 else SpecErrors(errors)


# Names other libraries use for a choice txdsl spells differently (activations, mostly).
ALSO_KNOWN_AS = {"swish": "silu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                 "gelu_fast": "gelu_tanh", "approximate_gelu": "gelu_tanh"}


def did_you_mean(name: str, choices: Iterable[str], what: str = "installed") -> str | None:
    """A hint naming the closest choice, and all choices (``None`` if none)."""
    names = sorted(set(choices))
    if not names:
        return None
    listing = f"{what}: {', '.join(names)}"
    if ALSO_KNOWN_AS.get(name) in names:
        return f"'{name}' is called '{ALSO_KNOWN_AS[name]}' here ({listing})"
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? ({listing})" if close else listing
