"""The ``txdsl`` command line: one module per subcommand, wired in :mod:`.main`."""

from .main import main

__all__ = ["main"]
