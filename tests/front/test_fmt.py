"""txdsl.front.fmt: canonical text, round trips, idempotence, parentheses, comments."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txdsl.front.fmt import format_expr, format_spec, format_text
from txdsl.front.lower import parse_text
from txdsl.front.syntax import (Arg, Assign, Binary, Block, Bool, Call, Import, Index, LayerBlock, ModelDecl, Name,
                          Number, Slice, SpecFile, String, Unary)


def fmt(text: str) -> str:
    return format_text(textwrap.dedent(text).lstrip("\n"))


def check_round_trip(text: str) -> str:
    """Format ``text``; the result parses to the same tree and formats to itself."""
    once = format_text(text)
    assert parse_text(once) == parse_text(text)
    assert format_text(once) == once
    return once


GPT2 = """\
# specs/gpt2.tx  -- comments start with '#'
import "common.tx"           # imports come first
model gpt2 {
  vocab = 50257; d_model = 768; heads = 12; layers = 12; context = 1024
  eps = 1e-5

  embedding {
    tokens = vocab
    position = learned(max_len: context)
    dropout = 0.1
  }

  decoder(layers) {
    residual  = pre
    norm      = layernorm(eps: eps)
    attention = full(heads: heads)
    ffn       = mlp(hidden: 4 * d_model, act: gelu_tanh)
    final_norm = layernorm
    layer[3::4] { attention = local(heads: heads, window: 256) }
    layer[0] { attention.window = 64 }
    layer[2:6, -1] { ffn = none }
  }
  head = lm(tied: true)
}

model gpt2_small extends gpt2 { layers = 2; d_model = 64; decoder { attention.heads = 4 } }
"""

GPT2_CANONICAL = """\
# specs/gpt2.tx  -- comments start with '#'
import "common.tx"  # imports come first

model gpt2 {
  vocab = 50257
  d_model = 768
  heads = 12
  layers = 12
  context = 1024
  eps = 1e-5

  embedding {
    tokens = vocab
    position = learned(max_len: context)
    dropout = 0.1
  }

  decoder(layers) {
    residual = pre
    norm = layernorm(eps: eps)
    attention = full(heads: heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu_tanh)
    final_norm = layernorm
    layer[3::4] {
      attention = local(heads: heads, window: 256)
    }
    layer[0] {
      attention.window = 64
    }
    layer[2:6, -1] {
      ffn = none
    }
  }
  head = lm(tied: true)
}

model gpt2_small extends gpt2 {
  layers = 2
  d_model = 64
  decoder {
    attention.heads = 4
  }
}
"""


def test_the_example_spec_formats_canonically():
    assert format_text(GPT2) == GPT2_CANONICAL
    check_round_trip(GPT2)


EXAMPLES = [
    "",
    'import "a.tx"\nimport "b/c.tx";\n',
    "model m {}",
    "model m extends n {}",
    "model m { e {} d(6) {} layer[0] {} }",
    "model m { x = 1; y = 2.5; z = .5; w = 1e-5; v = 1.5E+3; u = 50_257; t = 1e300 }",
    'model m { s = "a\\"b\\\\c\\nd\\te"; t = ""; u = "# no comment" }',
    "model m { b = true; c = false; n = none }",
    "model m { c = layernorm(); d = layernorm; e = max(a, b,); f = mlp(hidden: 4 * d, act: gelu,) }",
    "model m { layer[0, -1, :, ::, 1:, :2, 1:2, ::3, 1::3, :2:3, 1:2:3, -n:, n - 1] { x.y.z = 1 } }",
    "model m { x = a - (b - c) - d; y = (a - b) - c; z = a / (b * c); w = (a / b) * c }",
    "model m { x = (-2) ** 2; y = -2 ** 2; z = 2 ** -1; w = (2 ** 3) ** 4; v = 2 ** 3 ** 4 }",
    "model m { x = - -a; y = -(a + b); z = +a; w = a * -b; v = (a + b) * (c % d) // e }",
    "model m { x = f(a: g(b: h(c: (1 + 2) * 3))) }",
    "model a { x = 1 } model b extends a { x = 2 } model c extends b { }",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_round_trip_and_idempotence(text):
    check_round_trip(text)


def test_minimal_parentheses():
    out = format_text(EXAMPLES[10]) + format_text(EXAMPLES[11]) + format_text(EXAMPLES[12])
    for line in ["x = a - (b - c) - d", "y = a - b - c", "z = a / (b * c)", "w = a / b * c",
                 "x = (-2) ** 2", "y = -2 ** 2", "z = 2 ** -1", "w = (2 ** 3) ** 4", "v = 2 ** 3 ** 4",
                 "x = --a", "y = -(a + b)", "z = +a", "w = a * -b", "v = (a + b) * (c % d) // e"]:
        assert f"  {line}\n" in out, line


def test_literals_print_canonically():
    out = format_text(EXAMPLES[5] + EXAMPLES[6])
    for line in ["x = 1", "y = 2.5", "z = 0.5", "w = 1e-5", "v = 1500.0", "u = 50257", "t = 1e300",
                 's = "a\\"b\\\\c\\nd\\te"', 't = ""']:
        assert f"  {line}\n" in out, line


def test_empty_blocks_and_headers():
    assert fmt("model m { e { } d(n * 2) { } layer[0, 2:] { } }") == (
        "model m {\n  e {}\n  d(n * 2) {}\n  layer[0, 2:] {}\n}\n")


def test_format_expr_and_trees_without_spans():
    assert format_expr(Binary("*", Binary("+", Name("a"), Number(1)), Unary("-", Name("b")))) == "(a + 1) * -b"
    assert format_expr(Binary("**", Number(-2), Number(2))) == "(-2) ** 2"
    spec = SpecFile((Import("x.tx"),), (ModelDecl("m", None, (
        Assign(("a", "b"), Call("f", (Arg("k", String("v")), Arg(None, Bool(True))))),
        Block("d", Number(2), (LayerBlock((Index(Number(0)), Slice(None, None, Number(2))), ()),)),
    )),))
    text = format_spec(spec)
    assert text == ('import "x.tx"\n\nmodel m {\n  a.b = f(k: "v", true)\n  d(2) {\n    layer[0, ::2] {}\n'
                    "  }\n}\n")
    assert parse_text(text) == spec


def test_blank_lines_are_kept_once_and_never_added():
    assert fmt("""
        model m {

          a = 1


          b = 2
          c = 3

        }
        """) == "model m {\n  a = 1\n\n  b = 2\n  c = 3\n}\n"


# ---------------------------------------------------------------- comments


def test_comments_keep_their_places():
    text = """\
        # file header

        import "a.tx"  # why a
        # before the model
        model m {  # on the model line
          # before x
          x = 1  # after x
          d(2) {
            y = 2  # after y
            # before d's brace
          }  # after d
          layer[0] { z = 3 }  # after the layer block
          e {
            # only a comment
          }
          w = f(a: 1,  # inside a call
                # own line inside a call
                b: 2)
          # before m's brace
        }
        # the end
        """
    expected = """\
        # file header

        import "a.tx"  # why a

        # before the model
        model m {  # on the model line
          # before x
          x = 1  # after x
          d(2) {
            y = 2  # after y
            # before d's brace
          }  # after d
          layer[0] {
            z = 3
          }  # after the layer block
          e {
            # only a comment
          }
          # own line inside a call
          w = f(a: 1, b: 2)  # inside a call
          # before m's brace
        }
        # the end
        """
    assert fmt(text) == textwrap.dedent(expected)
    check_round_trip(textwrap.dedent(text))


def test_comment_only_file_and_trailing_whitespace():
    assert format_text("# one   \n\n\n# two\n") == "# one\n\n# two\n"
    assert format_text("model m {} # after\n") == "model m {}  # after\n"
    assert format_text("model m {\n}  # after\n") == "model m {}  # after\n"


def test_comments_between_models_stay_with_the_next_model():
    assert fmt("""
        model a {}
        # about b
        model b {}
        """) == "model a {}\n\n# about b\nmodel b {}\n"


# ---------------------------------------------------------------- generated trees

names = st.sampled_from(["a", "b", "d_model", "x1", "_", "_x", "none", "gelu", "models", "layers", "true_",
                         "Falsey", "e", "E5", "n_"])
atoms = st.one_of(
    st.integers(0, 10**12).map(Number),
    st.floats(0, 1e300, allow_nan=False, allow_infinity=False).map(Number),
    st.text(st.characters(blacklist_characters="\r\0", blacklist_categories=("Cs",)), max_size=8).map(String),
    st.booleans().map(Bool),
    names.map(Name),
)


def _compound(inner):
    args = st.lists(st.builds(Arg, st.none() | names, inner), max_size=3).map(tuple)
    return st.one_of(
        st.builds(Unary, st.sampled_from(["-", "+"]), inner),
        st.builds(Binary, st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), inner, inner),
        st.builds(Call, names, args),
    )


exprs = st.recursive(atoms, _compound, max_leaves=12)
small = st.recursive(atoms, _compound, max_leaves=3)
selectors = st.one_of(st.builds(Index, small),
                      st.builds(Slice, st.none() | small, st.none() | small, st.none() | small))
targets = st.lists(names, min_size=1, max_size=3).map(tuple)
stmts = st.recursive(
    st.builds(Assign, targets, small),
    lambda inner: st.one_of(
        st.builds(Block, names, st.none() | small, st.lists(inner, max_size=3).map(tuple)),
        st.builds(LayerBlock, st.lists(selectors, min_size=1, max_size=2).map(tuple),
                  st.lists(inner, max_size=3).map(tuple))),
    max_leaves=5)
specs = st.builds(
    SpecFile,
    st.lists(st.builds(Import, st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10)),
             max_size=2).map(tuple),
    st.lists(st.builds(ModelDecl, names, st.none() | names, st.lists(stmts, max_size=3).map(tuple)),
             max_size=2).map(tuple))


@settings(max_examples=100, deadline=None)
@given(specs)
def test_generated_specs_round_trip(spec):
    text = format_spec(spec)
    assert parse_text(text) == spec
    assert format_text(text) == text


@settings(max_examples=200, deadline=None)
@given(exprs)
def test_generated_expressions_round_trip(expr):
    text = format_spec(SpecFile((), (ModelDecl("m", None, (Assign(("x",), expr),)),)))
    assert parse_text(text).models[0].body[0].value == expr


@settings(max_examples=100, deadline=None)
@given(specs, st.data())
def test_generated_comments_survive_and_settle(spec, data):
    lines = format_spec(spec).split("\n")[:-1]
    for i in sorted(data.draw(st.lists(st.integers(0, max(0, len(lines))), max_size=6)), reverse=True):
        if data.draw(st.booleans()) and i < len(lines) and lines[i].strip():
            lines[i] += f"  # trailing {i}"
        else:
            lines.insert(i, f"# own {i}")
    text = "\n".join(lines) + "\n"
    once = format_text(text)
    assert parse_text(once) == spec
    assert format_text(once) == once
    assert sorted(c.text for c in parse_text(once).comments) == sorted(c.text for c in parse_text(text).comments)
