"""Parse .tx text into a Lark tree, turning every syntax problem into a SpecError.

The grammar is ``grammars/tx.lark`` (loaded through :data:`GRAMMAR_PATH`);
the LALR parser is built once. :func:`parse` returns the tree and the
comments (collected by a lexer callback so ``txdsl fmt`` can print them
back); :func:`parse_tree` returns the tree alone. ``txdsl.front.lower`` turns the
tree into ``txdsl.front.syntax`` nodes.

Guard rails, checked before anything walks the tree recursively: brackets,
blocks and operator chains nested more than :data:`MAX_DEPTH` levels are a
SpecError, never a RecursionError. A fast bracket-and-operator scan runs
before parsing (so a pathological megabyte fails in well under a second),
and an exact walk of the tree runs after it.
"""

from __future__ import annotations

import contextvars
import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ..errors import Source, Span, SpecError
from .source import check_size

__all__ = ["GRAMMAR_PATH", "MAX_DEPTH", "START_RULES", "ParseResult", "parse", "parse_tree"]

START_RULES = ("start", "import_stmt", "model", "stmt", "selector", "expr")
MAX_DEPTH = 100


def _grammar_path():
    """The installed ``txdsl.grammars/tx.lark``, else the source checkout's copy."""
    try:
        path = resources.files("txdsl.grammars") / "tx.lark"
        if path.is_file():
            return path
    except (ImportError, TypeError, OSError):
        pass
    return Path(__file__).resolve().parent.parent / "grammars" / "tx.lark"


GRAMMAR_PATH = _grammar_path()

# ---------------------------------------------------------------- the parser

_COMMENTS: contextvars.ContextVar[list | None] = contextvars.ContextVar("txdsl_comments", default=None)


def _collect_comment(token: Token) -> Token:
    sink = _COMMENTS.get()
    if sink is not None:
        sink.append(token)
    return token


@functools.lru_cache(maxsize=None)
def _parser() -> Lark:
    return Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", lexer="basic",
                start=list(START_RULES), propagate_positions=True, maybe_placeholders=True,
                lexer_callbacks={"COMMENT": _collect_comment})


@dataclass(frozen=True)
class ParseResult:
    tree: Tree
    comments: tuple[Token, ...]  # COMMENT tokens, in source order


def parse(source: Source, start: str = "start") -> ParseResult:
    """Parse ``source`` from the rule ``start`` (one of :data:`START_RULES`)."""
    if start not in START_RULES:
        raise ValueError(f"unknown start rule {start!r}; choose from {', '.join(START_RULES)}")
    check_size(source.text, source.path)
    _prescan(source)
    comments: list[Token] = []
    reset = _COMMENTS.set(comments)
    try:
        tree = _parser().parse(source.text, start=start)
    except UnexpectedInput as err:
        error: UnexpectedInput | None = err
    else:
        error = None
    finally:
        _COMMENTS.reset(reset)
    if error is not None:
        raise _syntax_error(source, error) from None
    _check_tree_depth(source, tree)
    return ParseResult(tree, tuple(comments))


def parse_tree(source: Source, start: str = "start") -> Tree:
    """The Lark tree of ``source`` parsed from ``start``; syntax errors raise SpecError."""
    return parse(source, start).tree


# ---------------------------------------------------------------- depth guards

_TOO_DEEP_HINT = ("split it into named parameters or smaller blocks "
                  f"(more than {MAX_DEPTH} levels, or a chain of more than {MAX_DEPTH} operators, "
                  "is refused)")
_SCAN = re.compile(r'''
    "(?:[^"\\\r\n]|\\.)*"?                                  # a string (maybe unterminated)
  | \#[^\r\n]*                                              # a comment
  | \.?[0-9][0-9_.]*(?:[eE][+-]?[0-9][0-9_]*)?              # a number, exponent included
  | [A-Za-z_][A-Za-z0-9_]*                                  # a name or keyword
  | \*\*|//|[-+*/%]|[(){}\[\]]|[,:=;]
''', re.VERBOSE)
_CLOSER = {"(": ")", "[": "]", "{": "}"}
_OPENER = {v: k for k, v in _CLOSER.items()}


def _position(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of character offset ``pos``, counted as Lark counts them."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _too_deep(source: Source, pos: int, what: str) -> SpecError:
    line, col = _position(source.text, pos)
    return SpecError(f"{what} nested too deeply (more than {MAX_DEPTH} levels)",
                     Span(source, line, col, line, col + 1), _TOO_DEEP_HINT)


def _prescan(source: Source) -> None:
    """Refuse deep bracket nesting and long operator chains before Lark sees them.

    Parentheses leave no node in the tree, so only this scan sees them. For
    operators it keeps, per bracket level, lower bounds of the tree's depth
    (the number of ``+ -`` in a row, of ``* / // %`` in one term, of ``**``
    in one factor, of unary signs in a row), so it never refuses an
    expression the exact check after parsing would accept.
    """
    parens = braces = 0
    stack: list[tuple[str, list[int], bool]] = []
    counts = [0, 0, 0, 0]  # + -, * / // %, **, unary
    operand = False  # was the last token a value (so a sign is binary)?
    for m in _SCAN.finditer(source.text):
        tok = m.group()
        c = tok[0]
        if c == "#":
            continue
        if c in "+-*/%":
            if not operand:
                counts[3] += 1
                level = counts[3]
            else:
                rank = 0 if tok in "+-" else 2 if tok == "**" else 1
                counts[rank] += 1
                counts[rank + 1:] = [0] * (3 - rank)
                level = counts[rank]
            operand = False
            if level > MAX_DEPTH:
                raise _too_deep(source, m.start(), "expression")
        elif c in "([{":
            if c == "{":
                braces += 1
                if braces > MAX_DEPTH:
                    raise _too_deep(source, m.start(), "blocks")
            else:
                parens += 1
                if parens > MAX_DEPTH:
                    raise _too_deep(source, m.start(), "expression")
            stack.append((c, counts, operand))
            counts, operand = [0, 0, 0, 0], False
        elif c in ")]}":
            if stack and stack[-1][0] == _OPENER[c]:
                opener, counts, _ = stack.pop()
                if opener == "{":
                    braces -= 1
                else:
                    parens -= 1
            operand = c == ")"
        elif c in ",:=;":
            counts, operand = [0, 0, 0, 0], False
        else:  # a value; a value right after a value starts a new statement
            if operand:
                counts = [0, 0, 0, 0]
            operand = True


def _open_brackets(text: str, end: int) -> list[tuple[str, int]]:
    """Brackets still open at offset ``end``: (bracket, offset), innermost last."""
    stack: list[tuple[str, int]] = []
    for m in _SCAN.finditer(text, 0, end):
        c = m.group()[0]
        if c in _CLOSER:
            stack.append((c, m.start()))
        elif c in _OPENER and stack and stack[-1][0] == _OPENER[c]:
            stack.pop()
    return stack


_NESTING = {"block": "blocks", "layer_block": "blocks", "call": "expression", "neg": "expression",
            "pos": "expression", "add": "expression", "sub": "expression", "mul": "expression",
            "div": "expression", "floordiv": "expression", "mod": "expression", "pow": "expression"}


def _check_tree_depth(source: Source, tree: Tree) -> None:
    """The exact check: no chain of blocks, nor of expression nodes, deeper than MAX_DEPTH."""
    todo = [(tree, 0, 0)]
    while todo:
        node, blocks, exprs = todo.pop()
        kind = _NESTING.get(node.data)
        if kind == "blocks":
            blocks, exprs = blocks + 1, 0
        elif kind == "expression":
            exprs += 1
        if max(blocks, exprs) > MAX_DEPTH:
            line, col = node.meta.line, node.meta.column
            raise SpecError(f"{kind} nested too deeply (more than {MAX_DEPTH} levels)",
                            Span(source, line, col, line, col + 1), _TOO_DEEP_HINT)
        todo.extend((c, blocks, exprs) for c in node.children if isinstance(c, Tree))


# ---------------------------------------------------------------- syntax errors
# Each entry: (message, hint, bad examples). An error gets the message of an
# example that fails in the same parser state on the same kind of token;
# entries marked ANY match whatever the token.

_ANY = "any token"
_MISSING_CLOSER = "a closing bracket is missing"
_EXAMPLES: list[tuple] = [
    ("use '=' to set a value, not ':'",
     "in a block write `name = value`; `name: value` is for call arguments",
     ["model m { x: 1 }", "model m { x.y: 1 }"]),
    ("missing '=' in an assignment", "write `name = value`, or `name { ... }` for a block",
     ["model m { x 1 }", "model m { x 1.5 }", 'model m { x "s" }', "model m { x y }",
      "model m { x true }", "model m { x - 1 }", "model m { x.y 1 }",
      "model m { x.y z }", "model m { x.y }"]),
    ("use ':' for a call argument, not '='", "write `kind(name: value, ...)`",
     ["model m { x = f(a = 1) }", "model m { x = f(a: 1, b = 2) }"]),
    ("missing ',' between call arguments", "write `kind(a: 1, b: 2)`",
     ["model m { x = f(a: 1 b: 2) }", "model m { x = f(a b) }", "model m { x = f(a: b c: 2) }"]),
    (_MISSING_CLOSER, None,  # the message names the bracket left open
     ["model m { x = f(a: 1 }", "model m { x = f(a }", "model m { x = (1 + 2 }",
      "model m { d(1 { } }", "model m { layer[0 { } }", "model m { layer[0:2 { } }"]),
    ("missing value after '='", "write `name = value`",
     ["model m { x = }", "model m { x = ; }", "model m { x = ) }"]),
    ("a value is missing after the operator", None,
     ["model m { x = 1 + }", "model m { x = 1 * }", "model m { x = - }", "model m { x = 2 ** }"]),
    ("unexpected '=' after a value",
     "each assignment is `name = value`; is a value missing before this line's name?",
     ["model m { x = y = 1 }"]),
    ("unexpected '}': there is no block to close", "remove it, or look for a stray '}' above",
     ["model m { x = 1 } }", "}"]),
    ("statements must be inside a model", "write `model NAME { ... }` around them",
     ["x = 1", "model m {} x = 1", "layer[0] {}", "model m {} layer[0] {}", 'import "a" x = 1']),
    ("expected a model name after 'model'", "write `model NAME { ... }`",
     ["model { }", "model 1 { }", 'model "m" { }'], _ANY),
    ("expected '{' after the model name", "write `model NAME { ... }` or `model NAME extends BASE { ... }`",
     ["model m x = 1 }", "model m extends b x = 1 }"], _ANY),
    ("expected the name of a model after 'extends'", "write `model NAME extends BASE { ... }`",
     ["model m extends { }"], _ANY),
    ("an import path is a string in double quotes", 'write `import "common.tx"`',
     ["import common", "import common.tx"], _ANY),
    ("expected '{' after the block name", "write `name { ... }` or `name(count) { ... }`",
     ["model m { d(6) x = 1 }"], _ANY),
    ("expected '[' after 'layer'", "write `layer[0] { ... }`, `layer[2:6] { ... }` or `layer[::4] { ... }`",
     ["model m { layer { } }", "model m { layer = 1 }"], _ANY),
    ("empty layer selector", "write `layer[0]`, `layer[2:6]`, `layer[::4]` or `layer[0, -1]`",
     ["model m { layer[] { } }"]),
    ("expected '{' after the layer selector", "write `layer[...] { ... }`",
     ["model m { layer[0] x = 1 }"], _ANY),
]

_HUMAN_REGEX = {"NAME": "a name", "INT": "a number", "FLOAT": "a number", "STRING": "a string",
                "$END": "end of file"}
_KEYWORDS = {"MODEL", "EXTENDS", "IMPORT", "LAYER", "TRUE", "FALSE"}


@functools.lru_cache(maxsize=None)
def _terminal_names() -> dict[str, str]:
    """Terminal name -> its text ('RBRACE' -> '}'), for the fixed-string terminals."""
    return {t.name: t.pattern.value for t in _parser().terminals if t.pattern.type == "str"}


@functools.lru_cache(maxsize=None)
def _example_table() -> tuple[tuple[str, str, tuple[str, str | None]], ...]:
    """The examples, parsed once: (bad token type or "" for any, example, (message, hint))."""
    rows = []
    for entry in _EXAMPLES:
        message, hint, examples = entry[:3]
        for example in examples:
            try:
                _parser().parse(example, start="start")
            except UnexpectedToken as err:
                rows.append(("" if entry[3:] == (_ANY,) else err.token.type, example, (message, hint)))
            except UnexpectedInput:
                pass
    return tuple(rows)


def _state_id(err: UnexpectedInput):
    """The LALR state alone: lark's ParserState equality also compares stack
    depth, so an example would only match errors at its own nesting depth."""
    return getattr(err.state, "position", err.state)


def _parse_example(text: str) -> None:
    try:
        _parser().parse(text, start="start")
    except UnexpectedInput as err:
        err.state = _state_id(err)
        raise


def _describe(token: Token) -> str:
    kind = {"NAME": "name ", "STRING": "string ", "INT": "number ", "FLOAT": "number "}.get(token.type)
    if kind:
        return kind + (token.value if token.type != "NAME" else f"'{token.value}'")
    return ("keyword " if token.type in _KEYWORDS else "") + f"'{token.value}'"


def _human_expected(expected: set[str]) -> str:
    names = _terminal_names()
    by_text = {v: k for k, v in names.items()}
    value = {"INT", "FLOAT", "STRING", "NAME", "TRUE", "FALSE"} | {by_text[c] for c in "(-+"}
    ops = {by_text[o] for o in ("+", "-", "*", "/", "//", "%", "**")}
    stmt = {"NAME", "LAYER"}
    rest, phrases = set(expected), []
    for group, phrase in ((value, "a value"), (ops, "an operator"), (stmt, "a statement")):
        if group <= expected:
            phrases.append(phrase)
            rest -= group
    if len(rest | set(phrases)) > 1:
        rest.discard("SEMICOLON")  # an optional ';' is never what is missing
    phrases += sorted(_HUMAN_REGEX.get(t) or f"'{names.get(t, t)}'" for t in rest)
    if not phrases:
        return "nothing more"
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _character_error(source: Source, err: UnexpectedCharacters) -> SpecError:
    pos, line, col = err.pos_in_stream, err.line, err.column
    c = source.text[pos]
    if c == '"':
        return SpecError("unterminated string", Span(source, line, col, line, col + 1),
                         "a string ends with '\"' on the same line; write \\\" for a quote inside it")
    m = re.match(r"\.?[0-9][A-Za-z0-9_.]*", source.text[pos:pos + 200])
    if m:
        return SpecError(f"invalid number '{m.group()}'", Span(source, line, col, line, col + len(m.group())),
                         "numbers look like 12, 50_257, 0.1, .5 or 1e-5; "
                         "put an operator between a number and a name (`4 * d_model`)")
    shown = f"U+{ord(c):04X}" if not c.isprintable() else "\"'\"" if c == "'" else f"'{c}'"
    hint = ("strings use double quotes" if c == "'" else
            "names use ASCII letters, digits and '_'" if c.isalpha() else None)
    return SpecError(f"unexpected character {shown}", Span(source, line, col, line, col + 1), hint)


# A value followed by a condition on the same line ("attention = local(...) for layers
# 0..2", "... if layer % 4 != 3"): the parser reads the word as the next statement's name.
_CONDITION = re.compile(r"=[^=\n;{}]*?[^\s=]\s+(for|if|when|where|unless|except)\s+$")
_CONDITION_HINT = ("a value in a block applies to every layer of the block; to set it for some "
                   "layers, use a layer block: `layer[0:3] { attention = ... }` (layers 0, 1, "
                   "2), `layer[3::4] { ... }` (every 4th from 3), `layer[0, -1] { ... }` "
                   "(first and last)")


def _condition_error(source: Source, token: Token) -> SpecError | None:
    """``name = value for/if ...``: a per-layer condition written inline."""
    line_start = source.text.rfind("\n", 0, token.start_pos) + 1
    m = _CONDITION.search(source.text[line_start:token.start_pos])
    if m is None:
        return None
    col = m.start(1) + 1
    return SpecError(f"'{m.group(1)}' can't follow a value: a block has no inline conditions",
                     Span(source, token.line, col, token.line, col + len(m.group(1))),
                     _CONDITION_HINT)


def _syntax_error(source: Source, err: UnexpectedInput) -> SpecError:
    if isinstance(err, UnexpectedCharacters):
        return _character_error(source, err)
    text, token = source.text, err.token  # type: ignore[attr-defined]
    if token.type in ("$END", "<EOF>"):
        return _end_of_file_error(source, err)
    span = Span(source, token.line, token.column, token.end_line, token.end_column)
    condition = _condition_error(source, token)
    if condition is not None:
        return condition
    expected = set(getattr(err, "accepts", None) or getattr(err, "expected", ()) or ())
    if token.type == "IMPORT" and expected & {"RBRACE", "MODEL", "$END"}:  # where a statement could start
        where = ("'import' is only allowed at the top of a file, before the first model"
                 if _open_brackets(text, token.start_pos) else "imports must come before the first model")
        return SpecError(where, span, "move this import to the top of the file")
    if token.type == "MODEL" and "RBRACE" in expected:
        block = next((pos for c, pos in reversed(_open_brackets(text, token.start_pos)) if c == "{"), None)
        if block is not None:
            return SpecError(f"a '}}' is missing before 'model' (the block opened at line "
                             f"{_position(text, block)[0]})", span, "every '{' needs a matching '}'")
    if token.type in _KEYWORDS and "NAME" in expected and token.type not in expected:
        return SpecError(f"unexpected keyword '{token.value}'; expected {_human_expected(expected)}", span,
                         f"'{token.value}' is a reserved word and cannot be used as a name")
    label = None
    if isinstance(err, UnexpectedToken) and err.state is not None:
        err.state = _state_id(err)
        candidates = [(lbl, [ex]) for ttype, ex, lbl in _example_table() if ttype in ("", token.type)]
        # use_accepts=False: candidates are already filtered by token type, and
        # lark 1.3 fails formatting a debug message on the use_accepts path.
        label = err.match_examples(_parse_example, candidates, token_type_match_fallback=True,
                                   use_accepts=False)
    if label is not None and label[0] == _MISSING_CLOSER:
        opened = _open_brackets(text, token.start_pos)
        if opened and opened[-1][0] != "{":
            (bracket, pos), closer = opened[-1], _CLOSER[opened[-1][0]]
            line, col = _position(text, pos)
            return SpecError(f"a '{closer}' is missing (the '{bracket}' opened at line {line}, column {col})",
                             span, f"every '{bracket}' needs a matching '{closer}'")
        label = None
    if label is not None:
        return SpecError(label[0], span, label[1])
    return SpecError(f"unexpected {_describe(token)}; expected {_human_expected(expected)}", span)


def _end_of_file_error(source: Source, err: UnexpectedInput) -> SpecError:
    text = source.text
    end = len(text.rstrip())
    while True:  # step back over trailing comments: the end is after the last token
        line_start = text.rfind("\n", 0, end) + 1
        hashes = [m.start() for m in _SCAN.finditer(text, line_start, end) if m.group()[0] == "#"]
        if not hashes:
            break
        end = len(text[:hashes[0]].rstrip())
    line, col = _position(text, end)
    span = Span(source, line, col, line, col + 1)
    opened = _open_brackets(text, len(text))
    if opened:
        bracket, pos = opened[-1]
        what = "block" if bracket == "{" else f"'{bracket}'"
        return SpecError(f"unexpected end of file: a '{_CLOSER[bracket]}' is missing "
                         f"(the {what} opened at line {_position(text, pos)[0]})", span,
                         f"every '{bracket}' needs a matching '{_CLOSER[bracket]}'")
    expected = set(getattr(err, "accepts", None) or getattr(err, "expected", ()) or ())
    return SpecError(f"unexpected end of file; expected {_human_expected(expected)}", span)
