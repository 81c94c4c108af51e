"""txdsl.front.lower: each rule group of the grammar lowers to the right syntax nodes, with spans."""

from __future__ import annotations

import pytest

from txdsl.errors import Source
from txdsl.front.lower import lower, parse_file, parse_text
from txdsl.front.syntax import (Arg, Assign, Binary, Block, Bool, Call, Import, Index, LayerBlock, ModelDecl,
                          Name, Number, Slice, SpecFile, String, Unary)


def B(op, left, right):  # noqa: N802 - short builders keep the expected trees readable
    return Binary(op, left, right)


def N(v):  # noqa: N802
    return Number(v)


a, b, c, d = Name("a"), Name("b"), Name("c"), Name("d")

# ---------------------------------------------------------------- file level


def test_empty_file_is_a_spec_with_nothing_in_it():
    assert parse_text("") == SpecFile((), ())
    assert parse_text("  \n# only a comment\n\n") == SpecFile((), ())


def test_imports_come_first_and_keep_their_paths():
    spec = parse_text('import "common.tx"\nimport "../zoo/gpt2.tx";\nmodel m {}')
    assert spec.imports == (Import("common.tx"), Import("../zoo/gpt2.tx"))
    assert spec.models == (ModelDecl("m", None, ()),)
    first = spec.imports[0].span
    assert (first.line, first.column, first.end_line, first.end_column) == (1, 1, 1, 19)


def test_semicolons_may_follow_imports_and_models():
    spec = parse_text('import "a.tx"; import "b.tx" ; model m {}; model n {} ;')
    assert [i.path for i in spec.imports] == ["a.tx", "b.tx"]
    assert [m.name for m in spec.models] == ["m", "n"]
    assert spec.imports[0].span.end_column == 14  # the ';' is not part of the import
    assert (spec.models[0].span.column, spec.models[0].span.end_column) == (32, 42)


def test_models_and_extends_with_name_spans():
    spec = parse_text("model base { x = 1 }\n\nmodel small extends base { x = 2 }")
    base, small = spec.models
    assert base == ModelDecl("base", None, (Assign(("x",), N(1)),))
    assert small == ModelDecl("small", "base", (Assign(("x",), N(2)),))
    assert base.extends_span is None
    assert (small.span.line, small.span.column, small.span.end_column) == (3, 1, 35)
    assert (small.name_span.column, small.name_span.end_column) == (7, 12)
    assert (small.extends_span.line, small.extends_span.column, small.extends_span.end_column) == (3, 21, 25)


def test_the_model_start_rule(low):
    assert low("model m extends n {}", "model") == ModelDecl("m", "n", ())


def test_source_and_comments_are_kept_on_the_spec():
    source = Source("x.tx", "# hi\nmodel m { x = 1 }  # there\n")
    spec = lower(source)
    assert spec.source is source
    assert [(cm.text, cm.line, cm.column) for cm in spec.comments] == [("# hi", 1, 1), ("# there", 2, 20)]


def test_parse_file_reads_and_lowers(tmp_path):
    path = tmp_path / "m.tx"
    path.write_text("model m { x = 1 }\n", encoding="utf-8")
    spec = parse_file(path)
    assert spec.models[0].name == "m"
    assert spec.models[0].span.path == str(path)


# ---------------------------------------------------------------- statements


def test_assignments_and_dotted_targets(low):
    assert low("d_model = 768", "stmt") == Assign(("d_model",), N(768))
    assert low("attention.window = 64", "stmt") == Assign(("attention", "window"), N(64))
    assert low("a.b.c = x;", "stmt") == Assign(("a", "b", "c"), Name("x"))


def test_statements_need_no_separator_and_accept_semicolons():
    one_line = parse_text("model m { a = 1 b = x c = f() layer[0] { d = 2 } e { } ; f = 3; }")
    spaced = parse_text("model m {\n a = 1\n b = x\n c = f()\n layer[0] {\n d = 2\n }\n e {}\n f = 3\n}")
    assert one_line == spaced
    assert [type(s).__name__ for s in one_line.models[0].body] == [
        "Assign", "Assign", "Assign", "LayerBlock", "Block", "Assign"]


def test_blocks_with_and_without_count(low):
    assert low("embedding {}", "stmt") == Block("embedding", None, ())
    assert low("encoder(6) { x = 1 }", "stmt") == Block("encoder", N(6), (Assign(("x",), N(1)),))
    nested = low("decoder(layers - 1) { heads { n = 2 } }", "stmt")
    assert nested == Block("decoder", B("-", Name("layers"), N(1)),
                           (Block("heads", None, (Assign(("n",), N(2)),)),))
    assert (nested.span.column, nested.span.end_column) == (1, 40)


@pytest.mark.parametrize("text, expected", [
    ("0", Index(N(0))),
    ("-1", Index(Unary("-", N(1)))),
    ("n - 1", Index(B("-", Name("n"), N(1)))),
    (":", Slice(None, None, None)),
    ("::", Slice(None, None, None)),
    ("2:", Slice(N(2), None, None)),
    (":6", Slice(None, N(6), None)),
    ("2:6", Slice(N(2), N(6), None)),
    ("2:6:", Slice(N(2), N(6), None)),
    ("::4", Slice(None, None, N(4))),
    ("3::4", Slice(N(3), None, N(4))),
    (":6:2", Slice(None, N(6), N(2))),
    ("1:-1:2", Slice(N(1), Unary("-", N(1)), N(2))),
    ("-3:", Slice(Unary("-", N(3)), None, None)),
])
def test_layer_selectors(low, text, expected):
    assert low(text, "selector") == expected
    assert low(f"layer[{text}] {{}}", "stmt") == LayerBlock((expected,), ())


def test_selector_lists_and_trailing_comma(low):
    block = low("layer[2:6, -1, 0,] { ffn = none }", "stmt")
    assert block == LayerBlock((Slice(N(2), N(6), None), Index(Unary("-", N(1))), Index(N(0))),
                               (Assign(("ffn",), Name("none")),))
    assert [(s.span.column, s.span.end_column) for s in block.selectors] == [(7, 10), (12, 14), (16, 17)]


def test_empty_slice_has_a_span(low):
    block = low("layer[:] {}", "stmt")
    assert (block.selectors[0].span.column, block.selectors[0].span.end_column) == (7, 8)


# ---------------------------------------------------------------- expressions


@pytest.mark.parametrize("text, expected", [
    ("a + b * c", B("+", a, B("*", b, c))),
    ("a * b + c", B("+", B("*", a, b), c)),
    ("a - b - c", B("-", B("-", a, b), c)),
    ("a - (b - c)", B("-", a, B("-", b, c))),
    ("a / b * c", B("*", B("/", a, b), c)),
    ("a // b % c", B("%", B("//", a, b), c)),
    ("a + b // c", B("+", a, B("//", b, c))),
    ("a ** b ** c", B("**", a, B("**", b, c))),
    ("(a ** b) ** c", B("**", B("**", a, b), c)),
    ("-a ** b", Unary("-", B("**", a, b))),
    ("(-a) ** b", B("**", Unary("-", a), b)),
    ("a ** -b", B("**", a, Unary("-", b))),
    ("-a * b", B("*", Unary("-", a), b)),
    ("- -a", Unary("-", Unary("-", a))),
    ("+a - -b", B("-", Unary("+", a), Unary("-", b))),
    ("a * (b + c)", B("*", a, B("+", b, c))),
    ("((((a))))", a),
    ("4 * d_model", B("*", N(4), Name("d_model"))),
    ("2 ** -1 * a", B("*", B("**", N(2), Unary("-", N(1))), a)),
])
def test_precedence_and_associativity(low, text, expected):
    assert low(text) == expected


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("768", 768), ("50_257", 50257), ("1_000_000", 10**6),
    ("0.1", 0.1), (".5", 0.5), ("1e-5", 1e-5), ("1.5E+3", 1500.0), ("2e3", 2000.0), ("1_0.2_5", 10.25),
])
def test_numbers(low, text, value):
    node = low(text)
    assert node == Number(value)
    assert type(node.value) is type(value)  # 2e3 is a float, 50_257 an int


@pytest.mark.parametrize("text, value", [
    ('""', ""), ('"gelu"', "gelu"), (r'"a\"b"', 'a"b'), (r'"back\\slash"', "back\\slash"),
    (r'"two\nlines"', "two\nlines"), (r'"tab\there"', "tab\there"), ('"# not a comment"', "# not a comment"),
    ('"üñí"', "üñí"),
])
def test_strings_and_escapes(low, text, value):
    assert low(text) == String(value)


def test_booleans_and_names(low):
    assert low("true") == Bool(True)
    assert low("false") == Bool(False)
    assert low("none") == Name("none")
    assert low("gelu_tanh") == Name("gelu_tanh")
    assert low("true_ish") == Name("true_ish")  # a keyword prefix does not make a keyword
    assert low("True") == Name("True")


def test_calls_named_positional_empty_trailing_comma(low):
    assert low("layernorm()") == Call("layernorm", ())
    assert low("layernorm") == Name("layernorm")
    assert low("mlp(hidden: 4 * d, act: gelu,)") == Call("mlp", (
        Arg("hidden", B("*", N(4), d)), Arg("act", Name("gelu"))))
    assert low("max(a, b + 1)") == Call("max", (Arg(None, a), Arg(None, B("+", b, N(1)))))
    assert low("f(x: g(y: h()))") == Call("f", (Arg("x", Call("g", (Arg("y", Call("h", ())),))),))


def test_expression_spans_exclude_their_own_parentheses(low):
    node = low("(a + b) * -c")
    assert (node.span.column, node.span.end_column) == (1, 13)
    assert (node.left.span.column, node.left.span.end_column) == (2, 7)
    assert (node.right.span.column, node.right.span.end_column) == (11, 13)


def test_call_spans():
    spec = parse_text("model m {\n  attention = local(heads: 8, window: 256)\n}")
    call = spec.models[0].body[0].value
    assert (call.span.line, call.span.column, call.span.end_column) == (2, 15, 43)
    assert (call.name_span.column, call.name_span.end_column) == (15, 20)
    assert [(arg.span.column, arg.span.end_column) for arg in call.args] == [(21, 29), (31, 42)]


def test_every_node_has_a_span():
    spec = parse_text("model m extends n { a.b = f(x: -1 ** 2, y: \"s\", z: true) d(2) { layer[1:2, 3] { q = w } } }")
    todo, seen = [spec.models[0]], 0
    while todo:
        node = todo.pop()
        assert node.span is not None and node.span.line >= 1, node
        seen += 1
        for value in vars(node).values():
            items = value if isinstance(value, tuple) else (value,)
            todo.extend(i for i in items if hasattr(i, "span"))
    assert seen >= 17
