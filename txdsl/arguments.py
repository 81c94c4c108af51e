"""What a component's arguments are, read off its pydantic model: for ``txdsl describe``.

For every field: its type as a spec writes it (``int``, ``float``, ``bool``,
``string``, a choice of symbols, ``... or none``), its default, its allowed
values (``Literal``/``Enum`` choices) and numeric constraints (pydantic's
``gt``/``ge``/``lt``/``le``/``multiple_of``), and a doc line. The doc line is,
in order: the field's ``Field(description=...)``; its attribute docstring
(a string right after it); the comment at the end of its line, or the
comment lines just above it, in the class that defines it (read from the
source with :mod:`ast`/:mod:`tokenize`, nothing executed); a line for common
argument names; else nothing. Plugins need not do anything special to be
described, but ``Field(description=...)`` is the surest.
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# Doc lines for argument names many kinds share, when the model says nothing.
COMMON = {
    "heads": "number of attention (query) heads",
    "kv_heads": "key/value heads: fewer than heads is grouped-query attention, 1 is "
                "multi-query; none: as many as heads",
    "eps": "added for numerical stability",
    "hidden": "width of the hidden layer",
    "window": "how many positions each query sees",
    "max_len": "the longest sequence it covers (rows of the table)",
    "classes": "number of output classes",
    "tied": "share the weight with the token embedding",
    "dropout": "dropout probability",
    "bias": "learned biases",
    "act": "the activation",
    "theta": "base of the rotation frequencies",
    "base": "base of the sinusoid frequencies",
    "buckets": "number of relative-position buckets",
    "max_distance": "distances beyond this are treated alike",
    "bidirectional": "separate buckets for keys before and after the query",
}
_OPS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "multiple_of": "multiple of",
        "min_length": "length >=", "max_length": "length <="}


@dataclass(frozen=True)
class Argument:
    name: str
    type: str  # as a spec writes it: "int", "float or none", "symbol", ...
    required: bool
    default: Any = None  # JSON value; None also when required
    choices: list[Any] | None = None  # Literal / Enum values
    constraints: dict[str, Any] = field(default_factory=dict)  # {"gt": 0, "lt": 1.0}
    doc: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def default_text(self) -> str:
        """The default as a spec writes it (``true``, ``none``, ``"p2c|c2p"``, ``gelu``)."""
        v = self.default
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return "none"
        if isinstance(v, str) and self.choices is None:
            return f'"{v}"'
        return str(v)

    def type_text(self) -> str:
        """The type with its constraints and choices: ``int > 0``, ``gelu | relu``."""
        nullable = self.type.endswith(" or none")
        base = self.type.removesuffix(" or none")
        if self.choices:
            base = " | ".join(str(c) for c in self.choices)
        limits = ", ".join(f"{_OPS.get(k, k)} {v}" for k, v in self.constraints.items())
        text = f"{base} {limits}" if limits else base
        return f"{text} or none" if nullable else text

    def signature_text(self) -> str:
        """``name: type`` or ``name: type = default``."""
        head = f"{self.name}: {self.type_text()}"
        return head if self.required else f"{head} = {self.default_text()}"


def arguments(model: type[BaseModel]) -> list[Argument]:
    """Every argument of ``model``, in declaration order."""
    out = []
    docs = field_docs(model)
    for name, info in model.model_fields.items():
        type_name, choices, constraints = _describe_type(info.annotation)
        for meta in info.metadata:
            constraints.update(_constraint(meta))
        required = info.is_required()
        default = None if required or info.default is PydanticUndefined else info.default
        if isinstance(default, enum.Enum):
            default = default.value
        if info.default_factory is not None:
            default = "(computed)"
        doc = info.description or docs.get(name) or COMMON.get(name, "")
        out.append(Argument(name=name, type=type_name, required=required,
                            default=_jsonable(default), choices=choices,
                            constraints=constraints, doc=" ".join(doc.split())))
    return out


def signature(model: type[BaseModel]) -> str:
    """All arguments on one line: ``heads: int > 0, bias: bool = true``."""
    return ", ".join(a.signature_text() for a in arguments(model))


# ------------------------------------------------------------------ types


def _describe_type(tp: Any) -> tuple[str, list[Any] | None, dict[str, Any]]:
    """(type name, choices, constraints) of an annotation."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(tp)
        name, choices, constraints = _describe_type(inner)
        for m in meta:
            constraints.update(_constraint(m))
        return name, choices, constraints
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(parts) < len(typing.get_args(tp))
        described = [_describe_type(p) for p in parts]
        names = " or ".join(d[0] for d in described)
        choices = [c for d in described for c in (d[1] or [])] or None
        constraints: dict[str, Any] = {}
        for d in described:
            constraints.update(d[2])
        return (f"{names} or none" if nullable else names), choices, constraints
    if origin is typing.Literal:
        values = list(typing.get_args(tp))
        return ("symbol" if all(isinstance(v, str) for v in values) else "value"), values, {}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "symbol", [m.value for m in tp], {}
    simple = {bool: "bool", int: "int", float: "float", str: "string"}
    if tp in simple:
        return simple[tp], None, {}
    return getattr(tp, "__name__", str(tp)), None, {}


def _constraint(meta: Any) -> dict[str, Any]:
    """``Gt(gt=0)`` -> ``{"gt": 0}``; pydantic's grouped metadata -> each of its bounds."""
    out = {}
    for key in _OPS:
        value = getattr(meta, key, None)
        if value is not None and not callable(value):
            out[key] = _jsonable(value)
    return out


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    return str(v)


# ------------------------------------------------------------ doc lines


def field_docs(model: type) -> dict[str, str]:
    """Field name -> the doc line its defining class's source gives it (see the module doc)."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):  # the most derived definition wins
        try:
            own = inspect.get_annotations(cls)  # this class's own, not inherited
        except TypeError:
            continue
        if not own:
            continue
        found = _source_docs(cls)
        docs.update({name: doc for name, doc in found.items() if name in own})
    return docs


@functools.lru_cache(maxsize=None)
def _source_docs(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
        comments = {tok.start[0]: tok.string.lstrip("#").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT}
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return {}  # no source (a built class, a zip import): no doc lines from it
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    lines = source.splitlines()
    out = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        after = body[i + 1] if i + 1 < len(body) else None
        if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            out[name] = inspect.cleandoc(after.value.value).split("\n\n")[0]
        elif node.end_lineno in comments and lines[node.end_lineno - 1].lstrip()[:1] != "#":
            out[name] = comments[node.end_lineno]
        else:  # comment lines right above the field
            above, n = [], node.lineno - 1
            while n in comments and lines[n - 1].lstrip().startswith("#"):
                above.insert(0, comments[n])
                n -= 1
            if above:
                out[name] = " ".join(above)
    return out
