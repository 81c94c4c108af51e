"""The README's "Writing a plugin" guide suffices alone: its two files, copied from the
README into a fresh package, pip-install, pass ``txdsl verify`` and build in a spec."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = "txdsl-window"
SPEC = """
model tiny_window {
  vocab = 64; d_model = 32; heads = 4; layers = 2; context = 32
  embedding { tokens = vocab }
  decoder(layers) {
    norm = rmsnorm; attention = window(heads: heads, kv_heads: 2, window: 4)
    position = rope; ffn = swiglu(hidden: 64); final_norm = rmsnorm
  }
  head = lm(tied: true)
}
"""


def guide_files() -> dict[str, str]:
    """The fenced blocks of the README's guide whose first line names a file."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    files = {}
    for body in re.findall(r"```(?:toml|python)\n(.*?)```", section, flags=re.S):
        first = body.splitlines()[0]
        if first.startswith("# ") and first[2:].strip().endswith((".toml", ".py")):
            files[first[2:].strip()] = body
    return files


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXDSL_")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    files = guide_files()
    assert set(files) == {"pyproject.toml", "txdsl_window.py"}, files.keys()
    pkg = tmp_path_factory.mktemp("guide") / DIST
    pkg.mkdir()
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    proc = _run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                "-e", str(pkg), cwd=pkg)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    try:
        yield pkg
    finally:
        _run("-m", "pip", "uninstall", "-y", DIST, cwd=pkg)
        assert DIST not in {d.metadata["Name"] for d in importlib.metadata.distributions()}


def test_the_guide_plugin_passes_txdsl_verify(installed):
    proc = _run("-m", "txdsl", "verify", "window", cwd=installed)
    assert proc.returncode == 2 and "--arg KEY=VALUE" in proc.stderr  # window is required
    proc = _run("-m", "txdsl", "verify", "window", "--arg", "window=3", cwd=installed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout and "(plugin window)" in proc.stdout
    assert "attention window[reference]  cached_decoding" in proc.stdout


def test_the_guide_plugin_builds_in_a_spec(installed):
    spec = installed / "tiny_window.tx"
    spec.write_text(SPEC)
    proc = _run("-m", "txdsl", "build", str(spec), "-o", str(installed / "out"), cwd=installed)
    assert proc.returncode == 0, proc.stderr
    assert "attention window -> reference (plugin window)" in proc.stdout
