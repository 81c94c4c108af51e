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
    """Builds full / linear / performer / luna / compressed decoders and decodes after a tiny prefill (no
    timing)."""
    out = _check("decode_scaling.py")
    assert "| linear | 64 |" in out and "| performer | 64 |" in out and "| full | 64 |" in out
    assert "| luna | 64 |" in out and "| compressed | 64 |" in out

def test_attention_scaling_quick(tmp_path):
    """``bench/attention_scaling.py --quick`` (two short lengths, tiny model) runs end to end:
    a row per registered entry, exponents fitted, unregistered kinds skipped with a note.
    Its numbers mean nothing (a smoke run); the real run is the lead's, on a quiet machine."""
    stem = tmp_path / "scaling"
    res = subprocess.run(
        [sys.executable, str(BENCH / "attention_scaling.py"), "--quick", "--threads", "1",
         "--reps", "1", "--only", "full (causal)", "lsh", "--name", str(stem)],
        capture_output=True, text=True, timeout=300, cwd=BENCH.parent)
    assert res.returncode == 0, f"attention_scaling.py --quick failed:\n{res.stdout}\n{res.stderr}"
    import json

    data = json.loads(stem.with_suffix(".json").read_text())
    names = [v["name"] for v in data["variants"]]
    assert names == ["full (causal)", "lsh 2x64 (causal)"]
    for v in data["variants"]:
        for mode in ("forward", "train"):
            assert all("error" not in r for r in v[mode].values()), v[mode]
            assert v[f"{mode}_time_exponent"] is not None
    assert data["machine"]["gemm_gflops"] > 0 and data["machine"]["copy_gbps"] > 0
    table = stem.with_suffix(".md").read_text()
    assert "| lsh 2x64 (causal) |" in table and "x)" in table  # a ratio against full


def test_vs_peers_check_only():
    """``bench/vs_peers.py --check-only --quick --no-compile``: tiny GPT-2 and BERT, both dtypes,
    every eager txdsl build equals Hugging Face's outputs (logits within 1e-3 in float32)
    and greedy tokens (float32), x-transformers' shapes; features of other branches are
    reported, not failed. The compiled paths are the lead's full run (they take minutes)."""
    res = subprocess.run(
        [sys.executable, str(BENCH / "vs_peers.py"), "--check-only", "--quick", "--no-compile",
         "--threads", "1"], capture_output=True, text=True, timeout=300, cwd=BENCH.parent)
    assert res.returncode == 0, f"vs_peers.py --check-only failed:\n{res.stdout}\n{res.stderr}"
    assert "every txdsl build matches Hugging Face" in res.stdout
    assert "gpt2 float32 decode b2 8+8: outputs checked" in res.stdout
    assert "bert bfloat16 forward 2x32: outputs checked" in res.stdout


def test_vs_peers_budget_shares_the_time_left():
    """``Budget.variant_seconds``: the time left, less the later cells' expected compile and
    check time (the finished cells' average, builds excluded), split over the cells left
    and the variants (arithmetic on a set clock; nothing is timed)."""
    sys.path.insert(0, str(BENCH))
    try:
        from _vs_peers_timing import Budget
    finally:
        sys.path.remove(str(BENCH))
    clock = Budget(1.0, cells=4)  # 60 s for 4 cells
    clock.start -= 20.0  # 20 s elapsed: one cell took them, 16 s compiling and checking
    clock.finished(16.0)  # 3 cells left, each expected to spend 16 s so
    got = clock.variant_seconds(10.0, variants=2)
    assert got == pytest.approx((60 - 20 - 16 * 2) / 3 / 2, abs=0.05)  # 1.33 s each
    assert clock.variant_seconds(0.5, variants=2) == 0.5  # never more than asked
    clock.start -= 60.0  # over the budget: nothing left to share, one repetition only
    assert clock.variant_seconds(10.0, variants=2) == 0.0
    clock.skipped()
    clock.skipped()
    clock.skipped()
    assert clock.cells_left == 0 and clock.variant_seconds(10.0, variants=2) == 10.0
    assert Budget(None, cells=3).variant_seconds(10.0, variants=5) == 10.0  # no budget
