"""The benchmark scripts still build their models and agree with Hugging Face.

No timing here (tests must not measure performance): each script's
``--check-only`` builds txdsl's GPT-2 and ``GPT2LMHeadModel`` with the same
weights and asserts equal logits / identical greedy generations, so the
scripts in ``bench/`` can't silently rot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _check(script: str) -> str:
    res = subprocess.run(
        [sys.executable, str(BENCH / script), "--check-only", "--quick", "--threads", "1"],
        capture_output=True, text=True, timeout=180, cwd=BENCH.parent)
    assert res.returncode == 0, f"{script} --check-only failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def test_gpt2_forward_check_only():
    out = _check("gpt2_forward.py")
    assert "outputs agree" in out
    assert "every variant matches Hugging Face" in out


def test_gpt2_generate_check_only():
    out = _check("gpt2_generate.py")
    assert "identical tokens" in out


def test_decode_scaling_check_only():
    """Builds full / linear / performer decoders and decodes after a tiny prefill (no timing)."""
    out = _check("decode_scaling.py")
    assert "| linear | 64 |" in out and "| performer | 64 |" in out and "| full | 64 |" in out

