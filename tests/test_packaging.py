"""The wheel: the grammar ships inside it and loads from the installed copy; plugins are
registered through entry points; the CLI entry point exists."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out), str(ROOT)], check=True, timeout=300)
    (whl,) = out.glob("txdsl-*.whl")
    return whl


def test_wheel_contents(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "txdsl/grammars/tx.lark" in names
    assert "txdsl/zoo/llama.tx" in names and "txdsl_hf/__init__.py" in names  # import "zoo:"
    for pkg in ("txdsl", "txdsl_attention", "txdsl_norms", "txdsl_positions", "txdsl_ffn",
                "txdsl_heads", "txdsl_embeddings", "txdsl_backends"):
        assert f"{pkg}/__init__.py" in names, pkg
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(meta).decode()
    assert "[txdsl]" in entry_points and "attention = txdsl_attention" in entry_points
    assert "txdsl = txdsl.cli:main" in entry_points
    assert not any(n.startswith(("tests/", "specs/", "bench/")) for n in names)


def test_grammar_loads_from_the_installed_copy(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import txdsl.front.parser as p; "
            "print(p.GRAMMAR_PATH); "
            "from txdsl.front.lower import parse_text; print(len(parse_text('model m { d_model = 8 }').models))")
    # Run from an empty directory, with the source checkout off the path.
    r = subprocess.run([sys.executable, "-I", "-c", code, str(site)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    grammar, models = r.stdout.split()
    assert Path(grammar).resolve() == (site / "txdsl" / "grammars" / "tx.lark").resolve()
    assert models == "1"
