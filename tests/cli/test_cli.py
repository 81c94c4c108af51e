"""The ``txdsl`` command as a user runs it: a real subprocess, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
TXDSL = [sys.executable, "-m", "txdsl"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*TXDSL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("txdsl ")


def test_check_all_bundled_specs():
    r = run("check", *sorted(str(p) for p in SPECS.glob("*.tx")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok  ") == len(list(SPECS.glob("*.tx")))


def test_show_json_has_the_documented_fields():
    r = run("show", "specs/gpt2.tx", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["name"] == "gpt2" and data["params"] == 124_439_808
    assert data["layers"] == 12 and data["flops_per_token"] > 0
    assert len(data["hash"]) == 64


def test_show_table():
    r = run("show", "specs/bert.tx", "--model", "bert")
    assert r.returncode == 0, r.stderr
    assert "109,482,240" in r.stdout and "encoder" in r.stdout


def test_fmt_check_passes_on_bundled_specs():
    r = run("fmt", "--check", *sorted(str(p) for p in SPECS.glob("*.tx")))
    assert r.returncode == 0, r.stderr


def test_fmt_write_is_atomic_and_preserves_meaning(tmp_path: Path):
    spec = tmp_path / "m.tx"
    spec.write_text((SPECS / "gpt2.tx").read_text().replace("  vocab = 50257", "vocab=50257  "))
    before = run("show", str(spec), "--json")
    assert run("fmt", "--check", str(spec)).returncode == 1
    assert run("fmt", "--write", str(spec)).returncode == 0
    assert run("fmt", "--check", str(spec)).returncode == 0
    after = run("show", str(spec), "--json")
    assert json.loads(before.stdout)["hash"] == json.loads(after.stdout)["hash"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.tx"]  # no temp files left behind


def test_schema_is_json_schema():
    r = run("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert schema["title"] == "ModelIR" and "properties" in schema
    assert "span" not in json.dumps(schema["properties"])


def test_usage_errors_exit_2():
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("show").returncode == 2


BAD_INPUTS = {
    "empty.tx": b"",
    "binary.tx": b"\x7fELF\x00\x01\x02model",
    "latin1.tx": "model m {\n  d_model = 64 # caf\xe9\n}\n".encode("latin-1"),
    "syntax.tx": b"model m {\n  d_model = = 3\n}\n",
    "deep.tx": b"model m { d_model = " + b"(" * 10_000 + b"1" + b")" * 10_000 + b" }",
    "longexpr.tx": b"model m { d_model = " + b"1+" * 200_000 + b"1 }",
    "big.tx": b"# padding\n" * (10 * 1024 * 1024 // 10),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_files_give_a_located_error_not_a_traceback(tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_bytes(BAD_INPUTS[name])
    for cmd in (["check"], ["show"], ["fmt"]):
        if cmd == ["fmt"] and name == "empty.tx":
            continue  # an empty file is well-formed: it formats to itself
        r = run(*cmd, str(path))
        assert r.returncode == 1, (cmd, r.stderr)
        assert "Traceback" not in r.stderr
        assert r.stderr.startswith(str(path)), r.stderr
        assert ": error: " in r.stderr.splitlines()[0]


def test_directory_and_missing_file(tmp_path: Path):
    for target in (tmp_path, tmp_path / "nope.tx"):
        r = run("check", str(target))
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.startswith(f"{target}: error: ")


def test_non_utf8_error_points_at_the_byte(tmp_path: Path):
    path = tmp_path / "latin1.tx"
    path.write_bytes(BAD_INPUTS["latin1.tx"])
    r = run("check", str(path))
    assert r.stderr.startswith(f"{path}:2:"), r.stderr


def test_several_errors_all_reported():
    r = run("check", "tests/errors/several_errors.tx")
    assert r.returncode == 1
    assert r.stderr.count(": error: ") == 4  # dropout, norm, heads, act


@pytest.mark.skipif(os.name != "posix", reason="permissions")
def test_unreadable_file(tmp_path: Path):
    if os.geteuid() == 0:
        pytest.skip("root can read anything")
    path = tmp_path / "locked.tx"
    path.write_text("model m {}")
    path.chmod(0)
    r = run("check", str(path))
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_directories_expand_to_their_specs():
    r = run("check", "specs")
    assert r.returncode == 0 and r.stdout.count("ok  ") == len(list(SPECS.glob("*.tx")))
    assert run("fmt", "--check", "specs").returncode == 0
