"""Command-line spec arguments: files as given, directories as the ``.tx`` files in them."""

from __future__ import annotations

from pathlib import Path


def expand(args: list[str]) -> list[str]:
    """``specs/`` -> ``specs/a.tx specs/b.tx ...`` (sorted, not recursive); files unchanged.

    A directory with no ``.tx`` file stays as it is, so it is reported as an error.
    """
    out: list[str] = []
    for arg in args:
        path = Path(arg)
        found = sorted(path.glob("*.tx")) if path.is_dir() else []
        out.extend(str(p) for p in found) if found else out.append(arg)
    return out
