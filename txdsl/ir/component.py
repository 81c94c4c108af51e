"""A component node: ``{family, kind, args}``.

Plugins are third-party, so the IR cannot hold a static union of every kind.
``args`` is the dump of the registered implementation's own pydantic model
(``extra="forbid"``), with defaults filled in; the builder validates it back
into that model. The span of the call and of each argument are kept beside
it for error messages, outside equality and the hash.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from ..errors import Span
from .node import Node


class Component(Node):
    family: str  # "attention", "norm", "position", "ffn", "head", "patches", ...
    kind: str  # the registered name: "full", "layernorm", "rope", ...
    args: dict[str, Any] = Field(default_factory=dict)
    span: Span | None = Field(default=None, exclude=True, repr=False)
    arg_spans: dict[str, Span] = Field(default_factory=dict, exclude=True, repr=False)

    def arg_span(self, name: str) -> Span | None:
        """Where argument ``name`` was written, else where the call was."""
        return self.arg_spans.get(name, self.span)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}: {_fmt(v)}" for k, v in self.args.items())
        return f"{self.kind}({inner})"


def _fmt(v: Any) -> str:
    """A value as a spec would spell it (``true``, ``none``, ``1e-5``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m[1].replace("+", "") + m[2], repr(v))
    return repr(v)
