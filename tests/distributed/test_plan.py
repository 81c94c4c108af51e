"""The plan and the per-rank memory from the IR alone (no processes): GPT-2 small's rank-0
parameters at tp 2 against the count written out by hand, the declarations' validation."""

from __future__ import annotations

from pathlib import Path

import pytest

import txdsl
from txdsl.parallel import model_plan
from txdsl.parallel.memory import per_rank
from txdsl.sdk.sharding import TPPlan

GPT2 = Path(__file__).resolve().parents[2] / "specs" / "gpt2.tx"


@pytest.fixture(scope="module")
def gpt2():
    return txdsl.parse_file(GPT2)


def test_gpt2_rank_parameters_at_tp2_match_the_count_by_hand(gpt2, registry):
    d, ff, vocab, ctx, layers = 768, 3072, 50257, 1024, 12
    half = lambda n: -(-n // 2)  # torch.chunk's first (largest) piece
    embedding = half(vocab) * d + ctx * d  # vocabulary rows split; positions whole
    attention = 3 * (d * half(d) + half(d)) + (half(d) * d + d)  # q, k, v colwise; out rowwise
    ffn = (d * half(ff) + half(ff)) + (half(ff) * d + d)  # up colwise, down rowwise
    norms = 2 * 2 * d
    expected = embedding + layers * (attention + ffn + norms) + 2 * d  # + final norm; tied head
    mem = per_rank(gpt2, registry, tp=2)
    assert mem.params == expected == 62_641_920
    assert mem.param_bytes == 4 * expected and mem.replicated == []
    whole = per_rank(gpt2, registry)
    assert whole.params == 124_439_808  # the model's exact count: nothing split at tp 1
    assert per_rank(gpt2, registry, tp=2).kv_cache_bytes * 2 == whole.kv_cache_bytes


def test_fsdp_splits_dim_0_of_what_tp_left(gpt2, registry):
    both = per_rank(gpt2, registry, tp=2, fsdp=2).params
    tp_only = per_rank(gpt2, registry, tp=2).params
    assert tp_only / 2 <= both < tp_only / 2 + 12 * 8 * 768  # ceil adds at most a row each


def test_the_plan_names_built_modules_and_their_styles(gpt2, registry):
    entries = {e.path: e.plan for e in model_plan(gpt2, registry, 4)}
    assert entries["decoder.layers.3.attention"].styles == {
        "q_proj": "colwise", "k_proj": "colwise", "v_proj": "colwise", "out_proj": "rowwise"}
    assert entries["decoder.layers.3.attention"].local == {"heads": 12, "kv_heads": 12}
    assert entries["heads.lm"].styles == {"": "vocab_head"}
    assert entries["embedding.tokens"].styles == {"": "vocab_embedding"}
    assert entries["decoder.final_norm"].styles == {}


def test_an_unknown_style_is_a_plugin_bug_named_at_once():
    with pytest.raises(ValueError, match="style 'diagonal'"):
        TPPlan(styles={"q_proj": "diagonal"})
