"""Putting a finished directory at a path atomically, one writer at a time.

:func:`replacing` is how an artifact reaches its output path::

    with replacing(dest) as tmp:      # a lock beside dest; stale temporaries cleaned
        ...write everything into tmp...
    # dest is now tmp's content; the old dest is gone

- **One writer per path.** ``.NAME.lock`` beside ``dest`` is held with
  ``flock`` while a build writes and swaps, so two builds of one output
  take turns (the last one's artifact stays). The lock file is removed on
  release; a waiter that locked a removed file tries again.
- **A complete directory at the path at every instant.** An existing
  ``dest`` is swapped with the new directory by ``renameat2(RENAME_EXCHANGE)``
  (Linux >= 3.15): one system call, nothing in between. Where the
  filesystem or libc lacks it, the fallback is two renames (the old
  directory aside, the new one in); a process killed between them leaves
  no directory at the path, and the next build to that path puts the old
  one back first (:func:`_recover`).
- **Stale temporaries are removed.** ``.NAME.partial-PID-*`` (a build that
  was killed) and ``.NAME.old-PID-*`` (an old artifact not yet deleted)
  are removed by the next build to the same path, once their process is
  gone (or they are older than :data:`STALE_AFTER` seconds, in case the
  PID was reused). Nothing else in the directory is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger("txdsl.build")

AT_FDCWD = -100
RENAME_EXCHANGE = 2
STALE_AFTER = 24 * 3600  # seconds: a temporary this old is stale whatever its PID says
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}


@contextlib.contextmanager
def replacing(dest: Path) -> Iterator[Path]:
    """A fresh temporary directory beside ``dest``, swapped into place if the block succeeds.

    The block runs under the output's lock; on any exception (or interrupt)
    the temporary is removed and ``dest`` is left as it was.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        _recover(dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-{os.getpid()}-",
                                    dir=dest.parent))
        try:
            yield tmp
            swap_into_place(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Make ``tmp`` be ``dest``; an existing ``dest`` is deleted once it has been replaced."""
    if not os.path.lexists(dest):
        os.rename(tmp, dest)  # fails, rather than merging, if dest appeared meanwhile
        return
    if exchange(tmp, dest):  # tmp now holds the old artifact
        _after_exchange()
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-{os.getpid()}-", dir=dest.parent))
    os.rename(dest, old / dest.name)
    _between_renames()
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old / dest.name, dest)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _after_exchange() -> None:
    """A point between the swap and deleting the old artifact (tests inject a kill here)."""


def _between_renames() -> None:
    """The fallback's window between its two renames (tests inject a kill here)."""


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; ``False`` where this system can't."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(b))


# ---------------------------------------------------------------- the lock


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    path = dest.parent / f".{dest.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another build writing %s", dest)
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed it as we waited: lock the new one
                try:
                    yield
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                return
        finally:
            os.close(fd)


# ---------------------------------------------------------------- stale temporaries


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _recover(dest: Path) -> None:
    """Under the lock: put back an old artifact a killed swap left aside, remove stale temporaries."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(partial|old)-(\d+)-")
    now = time.time()
    for entry in sorted(dest.parent.iterdir()):
        m = pattern.match(entry.name)
        if m is None or not entry.is_dir() or entry.is_symlink():
            continue
        pid = int(m.group(2))
        try:
            age = now - entry.lstat().st_mtime
        except FileNotFoundError:
            continue
        if pid != os.getpid() and _alive(pid) and age < STALE_AFTER:
            continue
        aside = entry / dest.name
        if m.group(1) == "old" and not os.path.lexists(dest) and aside.is_dir():
            log.warning("restoring %s, left aside by a build that was killed", dest)
            os.rename(aside, dest)
        log.info("removing %s, left by a build that was killed", entry)
        shutil.rmtree(entry, ignore_errors=True)
