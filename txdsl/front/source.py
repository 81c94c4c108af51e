"""Read spec files into :class:`~txdsl.errors.Source`, turning every file problem into a SpecError.

A missing file, a directory, an unreadable or oversized file, a binary file
or bytes that are not UTF-8 each get a one-line message naming the file
(and, for a bad byte, the line and column where it is), never an
``OSError`` or ``UnicodeDecodeError``. A leading UTF-8 byte-order mark is
dropped. Text is otherwise kept exactly as written, so columns in error
messages match what the user sees.
"""

from __future__ import annotations

import codecs
import os
import stat
from os import PathLike

from ..errors import Source, Span, SpecError

__all__ = ["MAX_BYTES", "check_size", "read_source", "source_from_text"]

MAX_BYTES = 1 << 20  # 1 MiB: a spec is a page of text, not a data file


def _too_large(size: int, path: str) -> SpecError:
    return SpecError(f"spec file is too large ({size / (1 << 20):.1f} MiB; the limit is 1 MiB)",
                     path=path, hint="a .tx spec describes a model; it should be a few kilobytes")


def check_size(text: str, path: str) -> None:
    """Refuse text whose UTF-8 encoding is larger than :data:`MAX_BYTES`."""
    if len(text) > MAX_BYTES // 4:  # 4 bytes per character at most: below this it always fits
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_BYTES:
            raise _too_large(size, path)


def _binary(path: str) -> SpecError:
    return SpecError("binary file, not a .tx spec", path=path,
                     hint="the file contains NUL bytes; a spec is UTF-8 text")


def _os_error(err: OSError, path: str) -> SpecError:
    if isinstance(err, (FileNotFoundError, NotADirectoryError)):
        return SpecError("no such file", path=path)
    if isinstance(err, IsADirectoryError):
        return SpecError("is a directory, not a spec file", path=path)
    if isinstance(err, PermissionError):
        return SpecError("cannot read the file: permission denied", path=path)
    reason = err.strerror or type(err).__name__
    return SpecError(f"cannot read the file: {reason[0].lower()}{reason[1:]}", path=path)


def read_source(path: str | PathLike[str]) -> Source:
    """The text of the spec file at ``path``; every problem with it is a SpecError."""
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except OSError as err:
        raise _os_error(err, name) from None
    except ValueError:  # e.g. an embedded NUL in the path itself
        raise SpecError("no such file", path=name.replace("\0", "\\0")) from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError("is a directory, not a spec file", path=name)
    if not stat.S_ISREG(info.st_mode):
        raise SpecError("not a regular file", path=name,
                        hint="a spec is read from an ordinary file, not a device, pipe or socket")
    if info.st_size > MAX_BYTES:
        raise _too_large(info.st_size, name)
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # the file may have grown since stat()
    except OSError as err:
        raise _os_error(err, name) from None
    if len(data) > MAX_BYTES:
        raise _too_large(max(len(data), info.st_size), name)
    return _decode(data, name)


def _decode(data: bytes, path: str) -> Source:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\0" in data:
        raise _binary(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = err.start
        line = data.count(b"\n", 0, bad) + 1
        line_start = data.rfind(b"\n", 0, bad) + 1
        column = len(data[line_start:bad].decode("utf-8")) + 1  # everything before `bad` is valid
        shown = Source(path, data.decode("utf-8", "replace"))
        raise SpecError(f"not valid UTF-8 (byte 0x{data[bad]:02x})", Span(shown, line, column, line, column + 1),
                        "save the file as UTF-8") from None
    return Source(path, text)


def source_from_text(text: str, path: str = "<string>") -> Source:
    """A Source for ``text`` (a string, not a file), with the same size and NUL checks."""
    if text.startswith("\ufeff"):
        text = text[1:]
    check_size(text, path)
    if "\0" in text:
        raise _binary(path)
    return Source(path, text)
