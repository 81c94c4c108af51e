"""``txdsl bench`` as a user runs it (a real subprocess, tiny sizes): the structure of what
it prints, never its speed."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TXDSL = [sys.executable, "-m", "txdsl"]
TINY = ["--seq-len", "8", "--repeat", "2", "--warmup", "1", "--gemm-size", "32",
        "--threads", "1"]

SPEC = """\
model gpt_tiny {
  vocab = 128
  d_model = 32
  heads = 4
  layers = 2
  context = 64
  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }
  decoder(layers) {
    norm = layernorm(eps: 1e-5)
    attention = full(heads: heads)
    ffn = mlp(hidden: 64, act: gelu)
    final_norm = layernorm(eps: 1e-5)
  }
  head = lm(tied: true)
}
"""


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*TXDSL, "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kw)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "tiny.tx"
    path.write_text(SPEC)
    return path


def test_json_figures(spec):
    r = run(str(spec), *TINY, "--generate", "4", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"] == "gpt_tiny" and data["backend"] == "eager"
    assert data["dtype"] == "float32" and data["quantize"] is None
    assert (data["batch"], data["seq_len"], data["threads"]) == (1, 8, 1)
    assert data["gemm"]["size"] == 32
    assert data["gemm"]["float32_flops"] > 0 and data["gemm"]["bfloat16_flops"] > 0
    f = data["forward"]
    assert f["runs"] == 2 and f["min_s"] <= f["median_s"] <= f["max_s"]
    assert f["tokens_per_s"] == pytest.approx(8 / f["median_s"])
    assert f["flops"] > 0 and f["fraction_of_gemm"] > 0
    d = data["decode"]
    assert d["new_tokens"] == 4 and d["prompt_len"] == 16
    assert d["tokens_per_s"] == pytest.approx(4 / d["median_s"])


def test_plain_lines_quantized_bf16(spec):
    r = run(str(spec), *TINY, "--dtype", "bfloat16", "--quantize", "int8-weight",
            "--batch", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "bench gpt_tiny: eager, cpu, bfloat16, int8-weight, 1 threads"
    assert lines[1].startswith("machine: matmul 32^3 float32 ") and "bfloat16" in lines[1]
    assert lines[2].startswith("forward 2x8: median ") and "tokens/s" in lines[2]
    assert "% of the bfloat16 matmul rate" in lines[2]
    assert len(lines) == 3  # no --generate: no decode line
    assert "timing forward 2x8" in r.stderr  # plain progress lines, no bar, off a terminal
    assert "\x1b[" not in r.stderr


def test_artifact_directory_as_built(spec, tmp_path):
    out = tmp_path / "art"
    b = subprocess.run([*TXDSL, "build", str(spec), "-o", str(out), "--quantize",
                        "int4-weight", "--no-run"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert b.returncode == 0, b.stderr
    assert "quantized 13 layers to int4-weight" in b.stdout and "top-1 agreement" in b.stdout
    r = run(str(out), *TINY, "--generate", "2", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["quantize"] == "int4-weight" and data["decode"]["tokens_per_s"] > 0
    r = run(str(out), "--dtype", "bfloat16")
    assert r.returncode == 2 and "--dtype applies to a spec" in r.stderr


def test_bad_values_refused(spec):
    r = run(str(spec), "--quantize", "int3")
    assert r.returncode == 2
    assert "unknown quantization 'int3'; did you mean 'int8-weight'?" in r.stderr
    r = run(str(spec), "--seq-len", "100")
    assert r.returncode == 2 and "longer than gpt_tiny's context (64)" in r.stderr
    r = run(str(spec), "--batch", "0")
    assert r.returncode == 2 and "must be at least 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_progress_bar_on_a_terminal(spec):
    """stderr a terminal: a rich bar (drawn, then cleared), not the plain lines."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    try:
        proc = subprocess.Popen([*TXDSL, "bench", str(spec), *TINY], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout, _ = proc.communicate(timeout=300)
    finally:
        os.close(master)
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "forward 1x8" in shown and "\x1b[" in shown  # the bar's task, drawn with escapes
    assert "timing forward" not in shown
    assert stdout.startswith("bench gpt_tiny: eager")
