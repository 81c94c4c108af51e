"""txdsl.front.source: every problem with a spec file is a SpecError naming the file."""

from __future__ import annotations

import builtins
import os

import pytest

from txdsl.errors import SpecError
from txdsl.front.lower import lower
from txdsl.front.source import MAX_BYTES, read_source, source_from_text
from txdsl.front.syntax import SpecFile


def error_of(path) -> SpecError:
    with pytest.raises(SpecError) as info:
        read_source(path)
    return info.value


def test_reads_a_spec(tmp_path):
    path = tmp_path / "m.tx"
    path.write_text("model m {\n  x = 1\n}\n", encoding="utf-8")
    source = read_source(path)
    assert source.path == str(path)
    assert source.text == "model m {\n  x = 1\n}\n"
    assert read_source(str(path)).text == source.text


def test_missing_file(tmp_path):
    err = error_of(tmp_path / "nope.tx")
    assert err.message == "no such file"
    assert err.render() == f"{tmp_path / 'nope.tx'}: error: no such file"
    assert err.line is None and err.span is None
    assert error_of(tmp_path / "nope" / "deeper.tx").message == "no such file"


def test_directory(tmp_path):
    err = error_of(tmp_path)
    assert err.message == "is a directory, not a spec file"
    assert err.path == str(tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_is_not_a_spec():
    assert error_of("/dev/null").message == "not a regular file"


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.tx"
    path.write_text("model m {}", encoding="utf-8")
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)  # chmod 000 does not stop root, who runs CI
    err = error_of(path)
    assert err.message == "cannot read the file: permission denied"
    assert err.path == str(path)


def test_too_large(tmp_path):
    path = tmp_path / "big.tx"
    path.write_bytes(b"#" * (10 * MAX_BYTES))
    err = error_of(path)
    assert err.message == "spec file is too large (10.0 MiB; the limit is 1 MiB)"
    assert err.path == str(path)
    exactly = tmp_path / "limit.tx"
    exactly.write_bytes(b"#" * MAX_BYTES)
    assert len(read_source(exactly).text) == MAX_BYTES


def test_binary_file(tmp_path):
    path = tmp_path / "weights.tx"
    path.write_bytes(b"model m {}\n\x00\x01\x02")
    err = error_of(path)
    assert err.message == "binary file, not a .tx spec"
    assert err.render().startswith(f"{path}: error: binary file, not a .tx spec")


def test_invalid_utf8_is_placed_at_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.tx"
    path.write_bytes("model m {\n  näme = 1\n}\n".encode("latin-1"))
    err = error_of(path)
    assert err.message == "not valid UTF-8 (byte 0xe4)"
    assert (err.line, err.column) == (2, 4)
    rendered = err.render().splitlines()
    assert rendered[0] == f"{path}:2:4: error: not valid UTF-8 (byte 0xe4)"
    assert rendered[1] == "      n\ufffdme = 1"
    assert rendered[2] == "       ^"


def test_invalid_utf8_column_counts_characters_not_bytes(tmp_path):
    path = tmp_path / "mixed.tx"
    path.write_bytes("# é ü\n".encode("utf-8") + b"x = \xff")
    assert (error_of(path).line, error_of(path).column) == (2, 5)
    first = tmp_path / "first.tx"
    first.write_bytes("é\xff".encode("utf-8")[:2] + b"\xff")
    assert (error_of(first).line, error_of(first).column) == (1, 2)


def test_bom_is_dropped(tmp_path):
    path = tmp_path / "bom.tx"
    path.write_bytes(b"\xef\xbb\xbfmodel m { x = 1 }\n")
    source = read_source(path)
    assert source.text == "model m { x = 1 }\n"
    assert lower(source).models[0].span.column == 1
    assert source_from_text("\ufeffmodel m {}").text == "model m {}"


def test_empty_file_is_an_empty_spec(tmp_path):
    path = tmp_path / "empty.tx"
    path.write_bytes(b"")
    assert lower(read_source(path)) == SpecFile((), ())


def test_source_from_text_checks_size_and_nul():
    assert source_from_text("model m {}").path == "<string>"
    assert source_from_text("x", "given.tx").path == "given.tx"
    with pytest.raises(SpecError, match=r"too large \(2\.0 MiB; the limit is 1 MiB\)"):
        source_from_text("é" * MAX_BYTES)  # 1 Mi characters, 2 MiB of UTF-8
    with pytest.raises(SpecError, match="binary file"):
        source_from_text("model m {}\0")
    assert len(source_from_text("#" * MAX_BYTES).text) == MAX_BYTES
