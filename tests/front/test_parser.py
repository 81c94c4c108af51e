"""txdsl.front.parser: the grammar's start rules, comment collection, friendly syntax errors, guard rails."""

from __future__ import annotations

import time

import pytest
from lark import Tree

from txdsl.errors import Source, SpecError
from txdsl.front.parser import GRAMMAR_PATH, MAX_DEPTH, START_RULES, parse, parse_tree
from txdsl.front.source import source_from_text

# ---------------------------------------------------------------- the grammar


def test_grammar_loads_from_one_path():
    assert GRAMMAR_PATH.name == "tx.lark"
    assert "start:" in GRAMMAR_PATH.read_text(encoding="utf-8")


def test_every_start_rule_parses_alone(src):
    assert set(START_RULES) >= {"start", "model", "stmt", "expr"}
    samples = {"start": 'import "a.tx" model m {}', "import_stmt": 'import "a.tx"', "model": "model m {}",
               "stmt": "x = 1", "selector": "1:2", "expr": "1 + 2"}
    for start in START_RULES:
        assert isinstance(parse_tree(src(samples[start]), start), Tree), start


def test_unknown_start_rule_is_a_programming_error(src):
    with pytest.raises(ValueError):
        parse_tree(src("x"), "nope")


def test_tree_shapes(src):
    assert parse_tree(src("a - b * c"), "expr") == Tree("sub", [
        Tree("name", ["a"]), Tree("mul", [Tree("name", ["b"]), Tree("name", ["c"])])])
    layer = parse_tree(src("layer[::2, 0] { x = 1 }"), "stmt")
    assert [child.data for child in layer.children] == ["slice", "index", "assign"]
    assert parse_tree(src(""), "start") == Tree("start", [])


def test_comments_are_collected_not_parsed(src):
    result = parse(src('# head\nimport "x.tx"  # why\nmodel m {\n  s = "# in a string" # tail\n}\n# end'))
    assert [(str(t), t.line, t.column) for t in result.comments] == [
        ("# head", 1, 1), ("# why", 2, 16), ("# tail", 4, 23), ("# end", 6, 1)]
    assert parse(src("model m {}")).comments == ()


def test_crlf_line_endings(src):
    result = parse(src("model m {\r\n  x = 1  # c\r\n}\r\n"))
    assert [str(t) for t in result.comments] == ["# c"]


def test_keywords_are_reserved_but_not_their_prefixes(src):
    assert parse_tree(src("models = layers"), "stmt").children[1] == Tree("name", ["layers"])
    with pytest.raises(SpecError, match="reserved word"):
        parse_tree(src("x = extends"), "stmt")


# ---------------------------------------------------------------- syntax errors

ERRORS = [
    # (text, message substring, line, column)
    ("model m {\n  x 1\n}", "missing '='", 2, 5),
    ("model m {\n  d {\n    x: 1\n  }\n}", "use '=' to set a value, not ':'", 3, 6),
    ("model m {\n  x = f(a = 1)\n}", "use ':' for a call argument, not '='", 2, 11),
    ("model m {\n  x = f(a: 1 b: 2)\n}", "missing ','", 2, 14),
    ('model m {\n  x = "abc\n}', "unterminated string", 2, 7),
    ('model m {}\nimport "x.tx"', "imports must come before the first model", 2, 1),
    ('model m {\n  import "x.tx"\n}', "only allowed at the top of a file", 2, 3),
    ("model m {\n  x = 1 )\n}", "unexpected ')'", 2, 9),
    ("model m {\n  x = 1 } }", "no block to close", 2, 11),
    ("model m {\n  d {\n    x = 1\n  }\n", "unexpected end of file: a '}' is missing (the block opened at line 1)", 4, 4),
    ("model m {\n  d {\n    x = 1\n", "a '}' is missing (the block opened at line 2)", 3, 10),
    ("model m {\n  x = f(\n", "a ')' is missing (the '(' opened at line 2)", 2, 9),
    ("model m {\n  x = 1\nmodel n {}", "a '}' is missing before 'model' (the block opened at line 1)", 3, 1),
    ("model m {\n  x = f(a: 1\n}", "a ')' is missing (the '(' opened at line 2, column 8)", 3, 1),
    ("model m {\n  layer[0 { }\n}", "a ']' is missing", 2, 11),
    ("model m {\n  layer { }\n}", "expected '[' after 'layer'", 2, 9),
    ("model m {\n  layer[] { }\n}", "empty layer selector", 2, 9),
    ("model m {\n  layer[0] x = 1\n}", "expected '{' after the layer selector", 2, 12),
    ("model m {\n  d(6) x = 1\n}", "expected '{' after the block name", 2, 8),
    ("x = 1", "statements must be inside a model", 1, 1),
    ("model {}", "expected a model name", 1, 7),
    ("model m x = 1 }", "expected '{' after the model name", 1, 9),
    ("model m extends { }", "expected the name of a model after 'extends'", 1, 17),
    ("import common", "import path is a string in double quotes", 1, 8),
    ("model m {\n  x = 1 +\n}", "a value is missing after the operator", 3, 1),
    ("model m {\n  x =\n}", "missing value after '='", 3, 1),
    ("model m {\n  x = y = 2\n}", "unexpected '=' after a value", 2, 9),
    ("model m {\n  x = @\n}", "unexpected character '@'", 2, 7),
    ("model m {\n  x = $y\n}", "unexpected character '$'", 2, 7),
    ("model m {\n  x = 'a'\n}", "unexpected character \"'\"", 2, 7),
    ("model m {\n  x = é\n}", "unexpected character 'é'", 2, 7),
    ("model m {\n  x = 4d_model\n}", "invalid number '4d_model'", 2, 7),
    ("model m {\n  x = 1.\n}", "invalid number '1.'", 2, 7),
    ("model m {\n  x = 50_\n}", "invalid number '50_'", 2, 7),
    ("model m {\n  x = model\n}", "unexpected keyword 'model'", 2, 7),
    ("model m {\n  x.layer = 1\n}", "unexpected keyword 'layer'", 2, 5),
    ("model m {\n  x = f(a: 1,, b: 2)\n}", "unexpected ','", 2, 14),
    ("model m {\n  x = [1]\n}", "unexpected '['; expected a value", 2, 7),
    ('model m {\n  x = "a\\qb"\n}', "unknown escape '\\q'", 2, 9),
    ("model m {\n  x = 1e999\n}", "number 1e999 is too large", 2, 7),
    ("model m {\n  x = " + "9" * 5000 + "\n}", "integer is too long", 2, 7),
    ("model m {\n\tx = ~1\n}", "unexpected character '~'", 2, 6),
    ("model m {\n  a = f(b: 1) for layers 0..2\n}", "'for' can't follow a value", 2, 15),
    ("model m {\n  a = f(b: 1) if layer % 4 != 3\n}", "'if' can't follow a value", 2, 15),
    ("model m {\n  a = 2 * d when d > 1\n}", "'when' can't follow a value", 2, 13),
]


@pytest.mark.parametrize("text, message, line, column", ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_syntax_errors_are_named_and_placed(syntax_error, text, message, line, column):
    err = syntax_error(text)
    assert message in err.message
    assert (err.path, err.line, err.column) == ("t.tx", line, column)
    rendered = err.render()
    head, shown, caret = rendered.splitlines()[:3]
    assert head.startswith(f"t.tx:{line}:{column}: error: ")
    source_line = text.split("\n")[line - 1]
    assert shown == "    " + source_line.expandtabs(1)
    assert caret.startswith("    " + " " * (column - 1) + "^")
    assert str(err) == rendered
    for token_name in ("RBRACE", "LBRACE", "RPAR", "EQUAL", "COLON", "$END", "__ANON", "NAME", "RSQB"):
        assert token_name not in err.message


def test_generic_errors_name_what_was_expected_in_words(syntax_error):
    err = syntax_error("model m {\n  x = f(a 1)\n}")
    assert err.message == "unexpected number 1; expected an operator, '(', ')', ',' or ':'"
    assert syntax_error("1 +", "expr").message == "unexpected end of file; expected a value"
    assert syntax_error("model m", "start").message == "unexpected end of file; expected 'extends' or '{'"


def test_errors_carry_hints_where_they_help(syntax_error):
    assert "`name = value`" in syntax_error("model m { x 1 }").hint
    assert "double quotes" in syntax_error("model m { x = 'a' }").hint
    assert syntax_error("model m { x = layer }").hint == "'layer' is a reserved word and cannot be used as a name"


def test_an_inline_layer_condition_points_to_layer_blocks(syntax_error):
    err = syntax_error("model m {\n  a = f(b: 1) for layers 0..2\n}")
    assert "`layer[0:3] { attention = ... }`" in err.hint and "layer[3::4]" in err.hint
    # A statement named like one of the words, on its own line, is still a statement.
    assert "can't follow" not in syntax_error("model m {\n  a = 1\n  for 2\n}").message


def test_errors_in_single_rules(syntax_error):
    assert "missing '='" in syntax_error("x 1", "stmt").message
    assert syntax_error("a +* b", "expr").column == 4
    assert "unexpected end of file" in syntax_error("", "expr").message


def test_end_of_file_error_skips_trailing_comments(syntax_error):
    err = syntax_error("model m {\n  x = 1  # one\n  # two\n\n")
    assert (err.line, err.column) == (2, 8)


# ---------------------------------------------------------------- guard rails


@pytest.mark.parametrize("text, what, column", [
    ("x = " + "(" * 5000 + "1" + ")" * 5000, "expression nested too deeply", 5 + MAX_DEPTH),
    ("x = " + "f(" * 150 + "1" + ")" * 150, "expression nested too deeply", 5 + 2 * MAX_DEPTH + 1),
    ("x = " + "-" * 5000 + "1", "expression nested too deeply", 5 + MAX_DEPTH),
    ("x = " + "1 + " * 150 + "1", "expression nested too deeply", 5 + 4 * MAX_DEPTH + 2),
    ("x = " + "2 ** " * 150 + "1", "expression nested too deeply", 5 + 5 * MAX_DEPTH + 2),
    ("x = " + "a * b + " * 150 + "1", "expression nested too deeply", None),
    ("x = " + "-(" * 150 + "1" + ")" * 150, "expression nested too deeply", None),
    ("d {" + " e {" * 150 + "}" * 151, "blocks nested too deeply", 3 + 4 * MAX_DEPTH),
    ("layer[0] {" * 150 + "}" * 150, "blocks nested too deeply", None),
])
def test_deep_nesting_is_a_spec_error(src, text, what, column):
    with pytest.raises(SpecError) as info:
        parse_tree(src(text), "stmt")
    err = info.value
    assert f"{what} (more than {MAX_DEPTH} levels)" in err.message
    assert err.line == 1 and (column is None or err.column == column)
    assert "^" in err.render()


def test_nesting_up_to_the_limit_is_fine(src):
    parse_tree(src("x = " + "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH), "stmt")
    parse_tree(src("x = " + "1 + " * (MAX_DEPTH - 1) + "1"), "stmt")
    parse_tree(src("x = " + "-" * MAX_DEPTH + "1"), "stmt")
    parse_tree(src("d {" * MAX_DEPTH + "}" * MAX_DEPTH), "stmt")
    # a long statement list is not nesting
    parse_tree(src("model m {" + " x = 1 + 2 * 3" * 5000 + "}"))


def test_a_million_term_expression_fails_fast():
    text = "model m { x = " + "1+" * 1_000_000 + "1 }"
    started = time.perf_counter()
    with pytest.raises(SpecError, match="too large"):
        parse_tree(Source("big.tx", text))
    with pytest.raises(SpecError, match="too large"):
        source_from_text(text, "big.tx")
    half = "model m { x = " + "1+" * 500_000 + "}"  # just under 1 MiB: refused before Lark runs
    with pytest.raises(SpecError, match="nested too deeply"):
        parse_tree(Source("big.tx", half))
    assert time.perf_counter() - started < 3.0


def test_deep_nesting_never_raises_recursion_error(src):
    for text in ("x = " + "[" * 10_000, "x = " + "{" * 10_000, "x = " + "(" * 100_000, "x = " + "- " * 100_000):
        with pytest.raises(SpecError):
            parse_tree(src(text), "stmt")
