"""``txdsl verify [KIND...]``: the contract suite on installed kinds, built-in or third party."""

from __future__ import annotations

import argparse
import json

from pydantic import ValidationError

from ..back.backends import parse_option_strings
from ..errors import did_you_mean
from ..plugins import get_registry
from ..sdk.testing import FAMILY_CHECKS, run_checks, subjects
from .main import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "verify", help="run the contract suite on installed kinds",
        description="Build every implementation of each kind and run the contract suite: masks "
                    "(causal, padding, fully masked rows), lengths 1 and odd, cached == uncached "
                    "decoding, every implementation == the reference one, param_count and "
                    "state_elements against the built module; position schemes in a tiny model: "
                    "shapes and dtypes, translation invariance of relative schemes, cached == "
                    "uncached decoding, padding, param_count, known reductions. Exit 1 if any "
                    "check fails.")
    p.add_argument("kinds", nargs="*", metavar="KIND",
                   help="kinds to verify (default: every attention, norm, ffn and position kind)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument the kinds are built with besides the family's defaults "
                        "(heads: 4 for attention, hidden: 64 for ffn), e.g. --arg window=4")
    p.add_argument("--json", action="store_true", help="machine-readable results")
    p.set_defaults(run=run)


def _families(registry, kinds: list[str]) -> list[tuple[str, list[str] | None]]:
    if not kinds:
        return [(family, None) for family in FAMILY_CHECKS]
    chosen: dict[str, list[str]] = {}
    for kind in kinds:
        family, _, name = kind.rpartition("/")  # "attention/full" or "full"
        families = [family] if family else [f for f in FAMILY_CHECKS if registry.has(f, name)]
        if not families or not registry.has(families[0], name):
            known = sorted({k for f in FAMILY_CHECKS for k in registry.kinds(f)})
            raise UsageError(f"no installed kind '{kind}' has a contract suite; "
                             + (did_you_mean(name, known) or f"known: {', '.join(known)}"))
        for f in families:
            chosen.setdefault(f, []).append(name)
    return list(chosen.items())


def run(args: argparse.Namespace) -> int:
    registry = get_registry()
    try:
        extra = parse_option_strings(args.arg)
    except ValueError as exc:
        raise UsageError(f"--arg: {exc}") from None
    items = []
    for family, kinds in _families(registry, args.kinds):
        for kind in kinds or registry.kinds(family):
            try:
                items += subjects(registry, family, [kind], {kind: extra})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(x) for x in first["loc"])
                raise UsageError(f"{family} '{kind}' can't be built for the suite: {where}: "
                                 f"{first['msg']}; give its arguments with --arg KEY=VALUE "
                                 "(txdsl describe shows them)") from None
    outcomes = run_checks(items)
    if args.json:
        print(json.dumps([{"family": o.subject.family, "kind": o.subject.kind,
                           "impl": o.subject.impl, "plugin": o.subject.plugin,
                           "check": o.check, "ok": o.ok, "error": o.error,
                           "skipped": o.skipped}
                          for o in outcomes], indent=2))
    else:
        width = max([len(f"{o.subject.family} {o.subject}") for o in outcomes] + [4])
        check_width = max([len(o.check) for o in outcomes] + [17])
        for o in outcomes:
            name = f"{o.subject.family} {o.subject}"
            status = ("FAILED: " + o.error if not o.ok
                      else f"n/a ({o.skipped})" if o.skipped else "ok")
            print(f"{name:<{width}}  {o.check:<{check_width}}  {status}  (plugin {o.subject.plugin})")
        failed = sum(not o.ok for o in outcomes)
        skipped = sum(bool(o.skipped) for o in outcomes)
        print(f"{len(outcomes) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return 1 if any(not o.ok for o in outcomes) else 0
