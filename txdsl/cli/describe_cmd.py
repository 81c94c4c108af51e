"""``txdsl describe KIND [--family F] [--json]``: one component kind, in full.

Its arguments (type, default, allowed values, constraints, doc line), its
paper, where a position acts / which positions an attention accepts, its
implementations and their targets, and the plugins providing it. An unknown
kind exits 1 with a hint (did you mean, or in the catalogue but not
installed); a name several families share (``relative_xl``) exits 2 and asks
for ``family/kind`` or ``--family``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..arguments import Argument
from ..describe import DescribeError, describe_kind, find_kind
from ..plugins import get_registry
from ..registry import FAMILIES


def add_parser(sub) -> None:
    p = sub.add_parser("describe", help="a component kind: arguments, paper, implementations",
                       description="Describe an installed component kind: every argument with "
                                   "its type, default, allowed values and doc line; its paper; "
                                   "where a position acts; its implementations and targets; "
                                   "the plugin that provides it.")
    p.add_argument("kind", metavar="KIND", help="a kind (rope), or FAMILY/KIND (position/rope)")
    p.add_argument("--family", help=f"the kind's family, when several have it "
                                    f"({', '.join(FAMILIES)})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    registry = get_registry()
    try:
        family, kind = find_kind(registry, args.kind, args.family)
    except DescribeError as err:
        print(f"txdsl: error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 2 if err.ambiguous else 1
    info = describe_kind(registry, family, kind)
    print(json.dumps(info, indent=2) if args.json else render(info))
    return 0


def render(info: dict[str, Any]) -> str:
    """The text ``txdsl describe`` prints."""
    out = [f"{info['family']} {info['kind']}: {info['summary']}".rstrip(": ")]
    if info["paper"]:
        out.append(f"paper: {info['paper']}")
    if info["urls"]:
        out.append(f"links: {info['urls'][0]}")
        out += [f"       {url}" for url in info["urls"][1:]]
    plugins = ", ".join(f"{p['name']} {p['version'] or '(unversioned)'}"
                        + (f" ({p['module']})" if p["module"] else "") for p in info["plugins"])
    out.append(f"plugin: {plugins}")
    if info.get("acts"):
        line = f"acts: {info['acts']} ({info['acts_doc']}); write it in {info['written_in']}"
        out.append(line)
        if info["accepted_by"] is not None:
            out.append(f"accepted by: {', '.join(info['accepted_by']) or 'no installed attention'}")
    if info["family"] == "attention":
        out.append(f"accepts positions acting on: {', '.join(info['accepts']) or 'nothing'}"
                   + (f" ({', '.join(info['positions'])})" if info["positions"] else ""))
    out.append(f"usage: {info['usage']}")

    out += ["", "arguments:"]
    args = [Argument(**a) for a in info["arguments"]]
    if not args:
        out.append("  (none)")
    name_w = max((len(a.name) for a in args), default=0)
    type_w = max((len(_type_default(a)) for a in args), default=0)
    for a in args:
        out.append(f"  {a.name:<{name_w}}  {_type_default(a):<{type_w}}  {a.doc}".rstrip())

    out.append("")
    if info["declared"]:
        out.append("implementations: none yet (declared: specs using it check and show; "
                   "building it needs an implementation)")
    else:
        out.append("implementations (best first; 'here' is cpu, float32, eager):")
        impl_w = max(len(i["impl"]) for i in info["implementations"])
        for i in info["implementations"]:
            here = "runs here" if i["runs_here"] else f"not here: {'; '.join(i['reasons'])}"
            out.append(f"  {i['impl']:<{impl_w}}  priority {i['priority']}, plugin "
                       f"{i['plugin']}; {i['targets_text']}; {here}")
    rest = info["doc"].split("\n\n", 1)[1:] if info["doc"] else []
    if rest:
        out += ["", *("  " + line if line else "" for line in rest[0].splitlines())]
    return "\n".join(out)


def _type_default(a: Argument) -> str:
    return a.type_text() + ("  (required)" if a.required else f" = {a.default_text()}")
