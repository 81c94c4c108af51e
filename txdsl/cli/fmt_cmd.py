"""``txdsl fmt SPEC...``: print, check or rewrite specs in canonical form.

The formatted text is re-parsed and compared with the original's syntax tree
before anything is printed or written, so formatting can never change what a
spec means; files are rewritten atomically, keeping their permissions, and a
symlink is written through (the file it points to changes, the link stays).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
from pathlib import Path

from ..errors import SpecError
from ..front.fmt import format_spec
from ..front.lower import lower
from ..front.source import read_source, source_from_text
from .paths import expand


def add_parser(sub) -> None:
    p = sub.add_parser("fmt", help="format spec files canonically",
                       description="Print the canonical form of each spec; --check reports "
                                   "files that differ (exit 1), --write rewrites them.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="a .tx file, or a directory of them")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is not formatted")
    mode.add_argument("--write", action="store_true", help="rewrite files in place")
    p.set_defaults(run=run)


def formatted(path: str) -> tuple[str, str]:
    """(original text, canonical text) of the spec at ``path``."""
    source = read_source(Path(path))
    tree = lower(source)
    text = format_spec(tree)
    again = lower(source_from_text(text, path))
    if again != tree:  # pragma: no cover - a formatter bug must never reach a file
        raise SpecError("internal error: formatting would change this spec's meaning; "
                        "nothing was written (please report this)", path=path)
    return source.text, text


def _write_atomic(path: Path, text: str) -> None:
    """Replace the file ``path`` names (through symlinks: the link stays a link) with
    ``text`` atomically, keeping its permission bits (and, where allowed, its owner)."""
    target = Path(os.path.realpath(path))
    info = target.stat()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), stat.S_IMODE(info.st_mode))
            if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(f.fileno(), info.st_uid, info.st_gid)
                except PermissionError:
                    pass  # the owner can't be kept; the permissions are
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    failed = changed = 0
    for path in expand(args.specs):
        try:
            old, new = formatted(path)
        except SpecError as err:
            failed += 1
            print(err.render(), file=sys.stderr)
            continue
        if args.check:
            if old != new:
                changed += 1
                print(f"would reformat {path}", file=sys.stderr)
        elif args.write:
            if old != new:
                _write_atomic(Path(path), new)
                print(f"reformatted {path}", file=sys.stderr)
        else:
            sys.stdout.write(new)
    return 1 if failed or changed else 0
