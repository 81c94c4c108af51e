"""An indivisible split is refused from the spec, before any process starts: a located
error (file:line:col, caret, hint) from ``txdsl check --tp`` and ``show --tp``, and a
``SpecError`` from :func:`txdsl.parallel.check_parallel` (which ``parallelize`` runs first)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import txdsl
from txdsl.parallel import check_parallel, model_plan

from dist_specs import GPT2, LLAMA

TWELVE = GPT2.replace("heads = 4", "heads = 12").replace("d_model = 32", "d_model = 48")


def txdsl_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "txdsl", *args], capture_output=True, text=True,
                          timeout=120)


def test_check_tp_refuses_indivisible_heads_at_the_argument(tmp_path, registry):
    spec = tmp_path / "twelve.tx"
    spec.write_text(TWELVE)
    r = txdsl_cli("check", "--tp", "5", str(spec))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = next(i for i, text in enumerate(TWELVE.splitlines(), 1) if "attention =" in text)
    assert f"{spec}:{line}:" in r.stderr
    assert "heads (12) is not divisible by the tensor-parallel size (5)" in r.stderr
    assert "^" in r.stderr and "hint:" in r.stderr
    check_parallel(txdsl.parse(TWELVE), registry, tp=4)  # 4 divides 12: accepted
    r = txdsl_cli("show", "--tp", "5", str(spec))
    assert r.returncode == 1 and "not divisible by the tensor-parallel size (5)" in r.stderr


def test_grouped_query_attention_splits_or_replicates_kv_heads(registry):
    ir = txdsl.parse(LLAMA)  # heads 4, kv_heads 2
    check_parallel(ir, registry, tp=2)  # kv heads split
    check_parallel(ir, registry, tp=4)  # 4 ranks, 2 kv heads: K/V replicated, one per rank
    plan = {e.path: e.plan for e in model_plan(ir, registry, 4)}["decoder.layers.0.attention"]
    assert plan.kv_replicated == {"k_proj": 2, "v_proj": 2} and plan.fixed == {"kv_heads": 1}
    assert "k_proj" not in plan.styles
    six = txdsl.parse(LLAMA.replace("heads = 4", "heads = 6").replace("d_model = 32",
                                                                      "d_model = 48"))
    with pytest.raises(txdsl.SpecError, match=r"kv_heads \(2\) is not divisible by the "
                                              r"tensor-parallel size \(3\)") as err:
        check_parallel(six, registry, tp=3)  # neither divides the other
    assert "or a multiple of it" in err.value.render()


def test_an_undeclared_kind_is_replicated_and_explained(registry):
    spec = GPT2.replace("attention = full(heads: heads)",
                        "attention = performer(heads: heads, features: 16)")
    ir = txdsl.parse(spec)
    entries = {e.path: e for e in model_plan(ir, registry, 2)}
    performer = entries["decoder.layers.0.attention"]
    assert performer.plan is None and "replicated" in performer.explain()
    assert entries["decoder.layers.0.ffn"].plan.styles == {"up": "colwise", "down": "rowwise"}
    check_parallel(ir, registry, tp=3)  # nothing declared to divide: replicated, accepted
