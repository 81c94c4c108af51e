"""Shared by the hardening tests: a tiny spec, the CLI as a subprocess, fake installed plugins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TXDSL = [sys.executable, "-m", "txdsl"]

TINY = """\
model tiny {
  vocab = 32; d_model = 16; heads = 2; context = 16
  embedding { tokens = vocab; position = learned(max_len: context) }
  decoder(1) {
    norm = NORM(eps: 1e-5)
    attention = full(heads: heads)
    ffn = mlp(hidden: 32)
    final_norm = NORM(eps: 1e-5)
  }
  head = lm(tied: true)
}
"""


def tiny_spec(norm: str = "layernorm") -> str:
    return TINY.replace("NORM", norm)


def write_spec(directory: Path, norm: str = "layernorm", name: str = "tiny.tx") -> Path:
    path = directory / name
    path.write_text(tiny_spec(norm))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TXDSL_PLUGINS", "TXDSL_PREFER", "TXDSL_DEBUG", "TXDSL_TRACE_PLUGINS")}
    env.update(extra)
    return env


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    """``txdsl ARGS`` in a real subprocess; ``Traceback`` never appears on stderr."""
    r = subprocess.run([*TXDSL, *args], cwd=cwd or ROOT, capture_output=True, text=True,
                       timeout=timeout, env=env if env is not None else clean_env(), **kw)
    assert "Traceback" not in r.stderr, r.stderr
    return r


class Site:
    """A directory of fake installed distributions (``*.dist-info`` with entry points in
    group ``txdsl``): ``importlib.metadata`` finds them as it finds pip-installed ones."""

    def __init__(self, path: Path):
        self.path = path
        self.tag = uuid.uuid4().hex[:8]  # unique module names: no sys.modules reuse

    def add(self, ep_name: str, code: str, version: str = "1.0", dist: str | None = None) -> str:
        module = f"txdsl_test_{ep_name}_{self.tag}"
        (self.path / f"{module}.py").write_text(textwrap.dedent(code))
        dist = dist or module
        info = self.path / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[txdsl]\n{ep_name} = {module}\n")
        return module

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a subprocess that sees these plugins installed."""
        path = os.pathsep.join([str(self.path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return clean_env(PYTHONPATH=path, **extra)
