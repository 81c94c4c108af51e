"""``txdsl`` entry point: parses arguments, dispatches, turns errors into exit codes.

Exit status: 0 success, 1 spec errors (rendered ``path:line:col: error: ...``),
build errors and the environment's (a full disk, a file-size limit, a path
that can't be written: the path and the OS error), 2 usage errors, 3 an
internal error (a bug: ``TXDSL_DEBUG=1`` shows the traceback). No spec,
however malformed, produces a Python traceback here.
Each subcommand is a module with ``add_parser(subparsers)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from .. import __version__
from ..errors import SpecError

COMMANDS = ["check", "show", "fmt", "schema", "build", "plugins", "describe", "verify",
            "import_hf", "export_hf", "generate", "bench"]


class UsageError(Exception):
    """A wrong command line (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="txdsl", description="Compile declarative .tx Transformer specs to PyTorch.")
    p.add_argument("--version", action="version", version=f"txdsl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        import_module(f".{name}_cmd", __package__).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # exits 2 on usage errors
    try:
        return int(args.run(args) or 0)
    except SpecError as err:
        print(err.render(), file=sys.stderr)
        n = len(err.errors)
        if n > 1:
            print(f"\n{n} errors", file=sys.stderr)
        return 1
    except UsageError as err:
        print(f"txdsl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("txdsl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `txdsl fmt x.tx | head`: the reader left; that's fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # the environment (a full disk, a size limit, permissions)
        if os.environ.get("TXDSL_DEBUG") == "1":
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"txdsl: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug in txdsl or a plugin, not in the user's input
        if os.environ.get("TXDSL_DEBUG") == "1":
            raise
        print(f"txdsl: internal error: {type(err).__name__}: {err}\n"
              "this is a bug in txdsl or one of its plugins, not in your spec; rerun with "
              "TXDSL_DEBUG=1 for the traceback, and please report it", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
