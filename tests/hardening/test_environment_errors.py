"""Class 6: the user's environment or spec is not a txdsl bug (exit 1 or 2, never 3).

A full disk, a file-size limit, an unwritable or impossible output path, a
``--seed`` beyond 64 bits and ``0 ** -1`` in a spec are reported with the
path and the OS error (exit 1), as a usage error (exit 2), or as a located
spec error, never as "internal error ... this is a bug in txdsl" (exit 3).
"""

from __future__ import annotations

import errno
import os
import resource
import signal

import pytest

import txdsl
from hardening_helpers import cli, tiny_spec, write_spec
from txdsl.back.builder import BuildError
from txdsl.errors import SpecError

BIG = tiny_spec().replace("vocab = 32", "vocab = 4000")  # weights of about 260 KB


def _no_bug(r):
    assert "internal error" not in r.stderr and "bug in txdsl" not in r.stderr, r.stderr


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_file_size_limit_exits_1_naming_the_path(tmp_path):
    spec = tmp_path / "big.tx"
    spec.write_text(BIG)

    def limit():  # in the child: writes past 64 KiB fail with EFBIG instead of a signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))

    r = cli("build", str(spec), "-o", str(tmp_path / "out"), "--no-run", preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    _no_bug(r)
    assert f"{tmp_path / 'out'}: cannot write the artifact" in r.stderr
    assert "File too large" in r.stderr
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_a_full_disk_exits_1_naming_the_path(tmp_path, monkeypatch, capsys):
    # ENOSPC can't be produced here without mounting a filesystem: injected at the write
    import txdsl.back.artifact as artifact
    from txdsl.cli.main import main

    def full(module, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(artifact, "save_weights", full)
    spec = write_spec(tmp_path)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--no-run"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out'}: cannot write the artifact (weights.safetensors): " \
           "No space left on device" in err
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_an_output_under_a_file_exits_1(tmp_path):
    spec = write_spec(tmp_path)
    r = cli("build", str(spec), "-o", str(spec / "sub"), "--no-run")
    assert r.returncode == 1, r.stderr
    _no_bug(r)
    assert f"{spec / 'sub'}: cannot create the artifact: {spec} is not a directory" in r.stderr


def test_an_unwritable_system_directory_exits_1(tmp_path):
    spec = write_spec(tmp_path)
    r = cli("build", str(spec), "-o", "/sys/txdsl-hardening-test", "--no-run")
    assert r.returncode == 1, r.stderr
    _no_bug(r)
    assert "/sys/txdsl-hardening-test" in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anything")
def test_an_unwritable_directory_exits_1(tmp_path):
    spec = write_spec(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    r = cli("build", str(spec), "-o", str(locked / "out"), "--no-run")
    assert r.returncode == 1, r.stderr
    assert f"{locked} is not writable" in r.stderr


@pytest.mark.parametrize("seed", [str(2**64), "1e3"])
def test_a_seed_beyond_64_bits_is_a_usage_error(tmp_path, seed):
    spec = write_spec(tmp_path)
    r = cli("build", str(spec), "-o", str(tmp_path / "out"), "--no-run", f"--seed={seed}")
    assert r.returncode == 2, r.stderr
    assert "argument --seed" in r.stderr
    assert not (tmp_path / "out").exists()


def test_the_api_refuses_such_a_seed(tmp_path):
    with pytest.raises(BuildError, match="seed 18446744073709551616 is not an integer"):
        txdsl.build(tiny_spec(), seed=2**64, progress=False)
    assert txdsl.build(tiny_spec(), seed=2**64 - 1, progress=False).module is not None


@pytest.mark.parametrize("expr", ["0 ** -1", "0.0 ** -2", "(d_model - 16) ** -1"])
def test_zero_to_a_negative_power_is_a_located_spec_error(tmp_path, expr):
    text = tiny_spec().replace("context = 16", f"context = 16; odd = {expr}")
    with pytest.raises(SpecError, match="division by zero") as info:
        txdsl.parse(text)
    assert info.value.line == 2
    if expr != "0 ** -1":
        return  # one CLI run is enough
    spec = tmp_path / "zero.tx"
    spec.write_text(text)
    r = cli("check", str(spec))
    assert r.returncode == 1 and "zero.tx:2:" in r.stderr and "division by zero" in r.stderr
