"""The build cache: a compiled ``model.pt2`` or ``model.onnx`` reused when nothing that
changes it has changed.

Exporting and compiling (``aot``: tens of seconds of C++; ``onnx``: seconds)
is the expensive part of a build; parsing, kernel selection and constructing
the weights are not. So ``txdsl build`` of a self-contained backend looks up
its compiled files here first, under a key over everything that changes the
result (:func:`cache_key`):

- the IR's hash, the kernel plan, the forced kernels, the example inputs'
  names, shapes and dtypes;
- the backend and its options, the dtype, the device (and CUDA capability),
  the seed, the sha256 of the ``--weights`` file;
- every other build option (a generic mapping: ``quantize`` and whatever
  comes next);
- the versions of txdsl, torch, Python and every plugin, and a fingerprint of
  their source files (an editable install changes code without a version).

Where: ``$TXDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/txdsl``, else
``~/.cache/txdsl``; one directory per key, ``builds/<key[:2]>/<key>/``,
holding the backend's files and ``entry.json`` (the key, what went into it,
the inputs, and a sha256 of every file and of the entry itself). An entry is
written atomically (:func:`txdsl.back.replace.replacing`: a complete
directory or none). Reading never unpickles: ``entry.json`` is JSON; an
entry whose files or hashes don't match (a corrupt or partial one) is
refused, logged and rebuilt, never loaded. The hashes catch corruption, not
tampering: anyone who can write the cache can also rewrite its hashes (the
same holds for the artifacts).

Size: the cache keeps at most ``$TXDSL_CACHE_MAX_GB`` gigabytes (default 10; 0: no
limit). After an entry is stored, the least recently used entries (a hit counts as a
use) are removed until the rest fit; the entry just stored is always kept, even alone
over the limit. An ``aot`` package of GPT-2 small is about 0.5 GB.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .artifact import sha256_file
from .replace import replacing

if TYPE_CHECKING:
    from ..registry import Registry

log = logging.getLogger("txdsl.build")
ENTRY = "entry.json"
FORMAT = "txdsl-build-cache"
FORMAT_VERSION = 1


class CacheError(Exception):
    """An entry that can't be used (missing, corrupt, another format): rebuilt, not loaded."""


DEFAULT_MAX_GB = 10.0


def max_bytes() -> int | None:
    """``$TXDSL_CACHE_MAX_GB`` (default 10) in bytes; ``None`` for 0 (no limit). A value
    that isn't a non-negative number is refused (:class:`ValueError`, naming it)."""
    raw = os.environ.get("TXDSL_CACHE_MAX_GB", "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        gb = -1.0
    if not gb >= 0 or gb == float("inf"):
        raise ValueError(f"TXDSL_CACHE_MAX_GB must be a number of gigabytes >= 0 "
                         f"(0: no limit), got {raw!r}")
    return None if gb == 0 else int(gb * 1e9)


def cache_root() -> Path:
    """``$TXDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/txdsl``, else ``~/.cache/txdsl``."""
    if os.environ.get("TXDSL_CACHE_DIR"):
        return Path(os.environ["TXDSL_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "txdsl"
    return Path.home() / ".cache" / "txdsl"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=str)


@functools.lru_cache(maxsize=None)
def source_fingerprint(module: str) -> str | None:
    """sha256 over the ``.py`` files of an imported package (or module), by relative path."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module.split(":")[0])
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None
    origin = Path(spec.origin)
    files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(origin.parent).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def current_versions(registry: "Registry | None") -> dict[str, Any]:
    """What the code that builds is: txdsl, torch, Python and each plugin, by version and
    by a fingerprint of its source."""
    import torch

    from .. import __version__

    plugins = dict(sorted(registry.plugins.items())) if registry is not None else {}
    return {
        "txdsl": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(),
        "plugins": {name: info.version for name, info in plugins.items()},
        "sources": {"txdsl": source_fingerprint("txdsl"),
                    **{name: source_fingerprint(info.module) for name, info in plugins.items()}},
    }


def cache_key(*, ir_hash: str, plan: Any, backend: str, options: Mapping[str, Any],
              dtype: str, device: str, seed: int, weights_sha256: str | None,
              force_kernels: Mapping[str, str], build_options: Mapping[str, Any],
              inputs: Mapping[str, Any], versions: Mapping[str, Any],
              cuda_capability: Any = None) -> tuple[str, dict[str, Any]]:
    """``(key, keyed)``: the sha256 of the canonical JSON of ``keyed``, the mapping of
    everything that changes a build's result (see the module docstring)."""
    keyed = {
        "ir_hash": ir_hash, "plan": plan, "backend": backend, "options": dict(options),
        "dtype": dtype, "device": device, "cuda_capability": cuda_capability, "seed": seed,
        "weights_sha256": weights_sha256, "force_kernels": dict(force_kernels),
        "build_options": dict(build_options), "inputs": dict(inputs), "versions": dict(versions),
    }
    keyed = json.loads(_canonical(keyed))  # plain JSON values, as entry.json will hold them
    return hashlib.sha256(_canonical(keyed).encode()).hexdigest(), keyed


class BuildCache:
    """A cache directory (default :func:`cache_root`). ``versions`` replaces
    :func:`current_versions` in every key (what tests use to play another release)."""

    def __init__(self, root: str | os.PathLike | None = None,
                 versions: Mapping[str, Any] | None = None, limit: int | None | str = "env"):
        self.root = Path(root) if root is not None else cache_root()
        self.versions = dict(versions) if versions is not None else None
        self.limit = max_bytes() if limit == "env" else limit  # bytes; None: no limit

    def __repr__(self) -> str:
        return f"BuildCache({str(self.root)!r})"

    def key(self, registry: "Registry | None" = None, **parts: Any) -> tuple[str, dict[str, Any]]:
        versions = self.versions if self.versions is not None else current_versions(registry)
        return cache_key(versions=versions, **parts)

    def path(self, key: str) -> Path:
        return self.root / "builds" / key[:2] / key

    def lookup(self, key: str) -> Path | None:
        """The verified entry of ``key``, or ``None``; a corrupt entry is logged and removed."""
        entry = self.path(key)
        if not entry.exists():
            return None
        try:
            verify(entry, key)
        except CacheError as exc:
            log.warning("build cache: %s; rebuilding", exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        _touch(entry)  # a use: the least recently used entries go first
        return entry

    def entries(self) -> list[tuple[Path, float, int]]:
        """Every entry as ``(directory, last use, bytes)``, the least recently used first."""
        out = []
        for entry in self.root.glob("builds/*/*"):
            if not (entry / ENTRY).is_file() or entry.name.startswith("."):
                continue  # a partial write in progress (replacing's temporary) or a stray
            try:
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
                out.append((entry, entry.stat().st_mtime, size))
            except OSError:  # removed meanwhile by another process
                continue
        return sorted(out, key=lambda e: e[1])

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Remove the least recently used entries until the cache fits its limit (never
        ``keep``); the removed directories."""
        if self.limit is None:
            return []
        entries = self.entries()
        total = sum(size for _, _, size in entries)
        removed = []
        for entry, _, size in entries:
            if total <= self.limit:
                break
            if keep is not None and entry == keep:
                continue
            shutil.rmtree(entry, ignore_errors=True)
            log.info("build cache: removed %s (%.2f GB; least recently used, over the "
                     "%.1f GB limit, TXDSL_CACHE_MAX_GB)", entry, size / 1e9, self.limit / 1e9)
            removed.append(entry)
            total -= size
        return removed

    def store(self, key: str, keyed: Mapping[str, Any], backend: Any, lowered: Any,
              inputs: Mapping[str, Any]) -> Path:
        """Save ``lowered``'s files (``backend.save``) as the entry of ``key``, atomically."""
        entry = self.path(key)
        with replacing(entry) as tmp:
            backend.save(lowered, tmp)
            files = {p.relative_to(tmp).as_posix(): sha256_file(p)
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
            raw = {"format": FORMAT, "format_version": FORMAT_VERSION, "key": key,
                   "backend": getattr(backend, "name", None), "inputs": dict(inputs),
                   "keyed": dict(keyed), "files": files}
            raw["entry_sha256"] = hashlib.sha256(_canonical(raw).encode()).hexdigest()
            (tmp / ENTRY).write_text(json.dumps(raw, indent=2) + "\n", encoding="ascii")
        _touch(entry)
        self.evict(keep=entry)
        return entry


def _touch(entry: Path) -> None:
    """Record a use of ``entry`` (its directory's mtime; the files and hashes unchanged)."""
    try:
        os.utime(entry)
    except OSError:  # a read-only cache still serves hits
        pass


def read_entry(entry: str | os.PathLike) -> dict[str, Any]:
    """``entry.json`` of a cache entry, parsed (no checks; see :func:`verify`)."""
    path = Path(entry) / ENTRY
    try:
        raw = json.loads(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CacheError(f"{path}: unreadable ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CacheError(f"{path}: not a txdsl build-cache entry")
    return raw


def verify(entry: Path, key: str) -> dict[str, Any]:
    """Refuse (:class:`CacheError`) an entry of another key or format, with a file missing,
    altered or unlisted, or an ``entry.json`` that was edited."""
    raw = read_entry(entry)
    where = entry / ENTRY
    if raw.get("format_version") != FORMAT_VERSION or raw.get("key") != key:
        raise CacheError(f"{where}: written for another key or cache format")
    body = {k: v for k, v in raw.items() if k != "entry_sha256"}
    if hashlib.sha256(_canonical(body).encode()).hexdigest() != raw.get("entry_sha256"):
        raise CacheError(f"{where}: its hash doesn't match (edited or partly written)")
    files = raw.get("files")
    if not isinstance(files, dict) or not files or not isinstance(raw.get("inputs"), dict):
        raise CacheError(f"{where}: lists no files or inputs")
    present = {p.relative_to(entry).as_posix() for p in entry.rglob("*")
               if p.is_file() or p.is_symlink()} - {ENTRY}
    if present != set(files):
        raise CacheError(f"{entry}: holds {sorted(present)}, but {ENTRY} lists {sorted(files)}")
    for rel, digest in files.items():
        path = entry / rel
        if path.is_symlink() or sha256_file(path) != digest:
            raise CacheError(f"{path}: sha256 mismatch (corrupt)")
    return raw


def open_cache(cache: Any) -> BuildCache | None:
    """``build(cache=...)``: ``True`` the default cache, ``False``/``None`` none, a path or
    a :class:`BuildCache` that one."""
    if cache is False or cache is None:
        return None
    if isinstance(cache, BuildCache):
        return cache
    if cache is True or isinstance(cache, (str, os.PathLike)):
        try:
            return BuildCache(None if cache is True else cache)
        except ValueError as exc:  # TXDSL_CACHE_MAX_GB: the user's setting, not a bug
            from .backends import BuildError

            raise BuildError(str(exc)) from None
    raise TypeError(f"cache must be True, False, a directory or a BuildCache, not "
                    f"{type(cache).__name__}")
