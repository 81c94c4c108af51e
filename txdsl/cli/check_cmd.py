"""``txdsl check SPEC... [--tp N]``: resolve and validate every model in each file."""

from __future__ import annotations

import argparse
import sys

from ..errors import SpecError
from ..front.resolve import parse_all
from .paths import expand


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="check spec files for errors",
                       description="Resolve and validate every model in each spec file.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="a .tx file, or a directory of them")
    p.add_argument("--tp", type=_positive, default=1, metavar="N",
                   help="also check that the models split across N tensor-parallel ranks "
                        "(heads, kv_heads divisible by N)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in expand(args.specs):
        try:
            models = parse_all(path)
            if not models:
                raise SpecError("no model defined", None, "a spec defines at least one model: "
                                "model NAME { ... }", path=path)
            if args.tp > 1:
                _check_tp(models, args.tp)
        except SpecError as err:
            failed += 1
            print(err.render(), file=sys.stderr)
            n = len(err.errors)
            print(f"{path}: {n} error{'s' if n > 1 else ''}\n", file=sys.stderr)
            continue
        names = ", ".join(m.name for m in models) or "no models"
        print(f"ok  {path} ({names})")
    return 1 if failed else 0


def _positive(text: str) -> int:
    from .show_cmd import positive_int

    return positive_int(text)


def _check_tp(models, tp: int) -> None:
    """Every model's tensor-parallel split (``--tp``); errors located at the argument."""
    from ..errors import ErrorSink
    from ..parallel.plan import check_parallel
    from ..plugins import get_registry

    sink = ErrorSink()
    for ir in models:
        check_parallel(ir, get_registry(), tp=tp, sink=sink)
    sink.check()
