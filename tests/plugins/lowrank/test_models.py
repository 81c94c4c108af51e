"""The low-rank / prototype kinds in models: validation refuses impossible uses at the
attention's line, ``txdsl verify`` passes, the specs build, and each kind is held to the
fixed-budget training bar (``tests/copy_task.py``, the bidirectional ``reverse`` task), at
two budgets: asserted where it holds with a seed to spare, reported where not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import txdsl
from copy_task import copy_spec, full_baseline, train
from txdsl.errors import SpecError

ROOT = Path(__file__).resolve().parents[3]
KINDS = ["linformer", "nystrom", "lowrank", "probsparse", "clustered", "compressed",
         "inducing", "luna"]

# A tiny encoder for the reverse task (N = 8 tokens; the output at i is the input at 7 - i).
REVERSE_ENCODER = """
model reverse_{name} {{
  vocab = 16; d_model = 64; heads = 4; layers = 2; context = 8
  embedding {{ tokens = vocab; position = learned(max_len: context) }}
  encoder(layers) {{
    residual = pre; norm = layernorm
    attention = {attention}
    ffn = mlp(hidden: 2 * d_model, act: gelu)
    final_norm = layernorm
  }}
  heads {{ lm = lm(tied: true) }}
}}
"""


def reverse_spec(attention: str, name: str = "variant") -> str:
    return REVERSE_ENCODER.format(attention=attention, name=name)


DECODER = """
model bad {{
  vocab = 16; d_model = 32; heads = 4; layers = 1{context}
  embedding {{ tokens = vocab; position = learned(max_len: 16) }}
  {stack}(layers) {{
    attention = {attention}
    ffn = mlp(hidden: 64){position}
  }}
  heads {{ lm = lm(tied: true) }}
}}
"""


def errors_of(attention: str, stack: str = "decoder", context: str = "; context = 16",
              position: str = "") -> str:
    text = DECODER.format(attention=attention, stack=stack, context=context, position=position)
    if not context:  # no context and no learned positions: the length is unbounded
        text = text.replace("; position = learned(max_len: 16)", "")
    with pytest.raises(SpecError) as err:
        txdsl.parse(text, path="bad.tx")
    return err.value.render()


def test_a_causal_linformer_is_refused_at_its_line():
    msg = errors_of("linformer(heads: heads, k: 8)")
    assert "bad.tx:6:17" in msg and "can't be used in a causal stack" in msg
    assert "mixes future positions" in msg


@pytest.mark.parametrize("kind, args", [("nystrom", ""), ("clustered", ""),
                                        ("inducing", ", m: 4")])
def test_other_non_causal_kinds_are_refused_in_a_decoder(kind, args):
    assert "can't be used in a causal stack" in errors_of(f"{kind}(heads: heads{args})")


def test_luna_pack_heads_must_divide_d_model():
    msg = errors_of("luna(heads: heads, p: 4, pheads: 3)", stack="encoder")
    assert "bad.tx:6:" in msg and "pheads (3)" in msg and "pick pheads dividing" in msg


def test_linformer_needs_a_context():
    msg = errors_of("linformer(heads: heads, k: 8)", stack="encoder", context="")
    assert "needs the model's context" in msg and "bad.tx:6:" in msg


def test_a_bias_position_is_refused_by_a_kind_without_scores():
    msg = errors_of("linformer(heads: heads, k: 8)", stack="encoder",
                    position="\n    position = alibi")
    assert "bad.tx:" in msg and "alibi" in msg


def test_txdsl_verify_passes_for_every_kind():
    run = subprocess.run([str(Path(sys.executable).parent / "txdsl"), "verify", *KINDS],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("spec", ["linformer", "nystromformer", "luna", "compressed",
                                  "clustered", "compressed_decoder", "luna_lm",
                                  "informer_decoder"])
def test_spec_checks(spec):
    txdsl.parse_file(ROOT / "specs" / f"{spec}.tx")


@pytest.mark.parametrize("kind, std", [
    ("luna(heads: heads, p: 8)", {"q_proj": 2 ** -0.5 * (2 / 128) ** 0.5,
                                  "pack_q": 2 ** -0.5 * (2 / 128) ** 0.5,
                                  "out_proj": (2 / 128) ** 0.5}),   # fairseq's Xavier
    ("linformer(heads: heads, k: 8)", {"k_proj": 2 ** -0.5 * (2 / 128) ** 0.5,
                                       "out_proj": (2 / 128) ** 0.5}),
    ("inducing(heads: heads, m: 8)", {"v_proj": 1 / 192 ** 0.5,    # U(+-1/sqrt 64)
                                      "pack_q": 1 / 192 ** 0.5}),
    ("full(heads: heads)", {"q_proj": 0.02, "out_proj": 0.02})])    # txdsl's own
def test_a_kind_starts_as_its_authors_code(kind, std):
    """``own_init`` runs after the model-wide N(0, 0.02) init (d_model 64: 4096 weights
    per projection, so the measured std is within a few percent)."""
    model = txdsl.build(reverse_spec(kind), backend="eager", seed=0).module
    attention = model.encoder.layers[0].attention
    for name, want in std.items():
        got = getattr(attention, name).weight.std().item()
        assert abs(got - want) < 0.05 * want, (name, got, want)


# Attention for the reverse task; full attention's baseline runs once per process and seed.
TRAINED = {
    "linformer": "linformer(heads: heads, k: 8)",
    "nystrom": "nystrom(heads: heads, landmarks: 4)",
    "lowrank": "lowrank(heads: heads, rank: 16)",
    "probsparse": "probsparse(heads: heads, factor: 2)",
    "clustered": "clustered(heads: heads, clusters: 4, iterations: 3)",
    "clustered_topk": "clustered(heads: heads, clusters: 4, iterations: 3, topk: 4)",
    "compressed": "compressed(heads: heads, stride: 2)",
    "inducing": "inducing(heads: heads, m: 8)",
    "luna": "luna(heads: heads, p: 8)",
}

# The protocol here: AdamW (copy_task's lr 3e-3, batch 16) on seeds 0-4 (the build's and
# the data's) at two fixed budgets, 240 and 720 steps, full attention trained with the same
# budget; the bar holds for a kind at a budget when, on at least 3 of the 5 seeds (the
# median of the ratios), its final loss is within 2x of full attention's on the same seed;
# every seed must halve its loss. Why not copy_task's 80 steps on one seed (the other
# catalogue issues' protocol): these kinds leave their initial plateau at seed-dependent
# times, most of them after 80 steps, so one 80-step run measures when the plateau ends,
# not whether the kind learns the task (inducing at 80 steps: 0.442/0.375/0.038 on seeds
# 0/1/2, against full's 0.029/0.023/0.030). Why two budgets: which kinds meet the bar moves
# with the budget both ways. A late plateau exit (luna) shows at 240 steps and is gone by
# 720; a loss floor of the approximation (clustered_topk) is hidden at 240, where full
# attention is at 0.004, and shows at 720, where it is at 0.0006. One budget alone would
# state half of that.
BUDGETS, SEEDS = (240, 720), (0, 1, 2, 3, 4)

# Measured (final loss per seed; initial losses 2.75-2.80):
# 240 steps, full attention 0.0041/0.0040/0.0037/0.0040/0.0042:
#   clustered_topk  0.004 0.006 0.004 0.004 0.006   (1.0-1.5x)      within the bar
#   lowrank         0.004 0.005 0.005 0.004 0.005   (1.0-1.2x)      within the bar
#   linformer       0.005 0.004 0.004 0.027 0.004   (seed 3 6.8x)   within the bar
#   nystrom         0.005 0.035 0.005 0.006 0.006   (seed 1 8.8x)   within the bar
#   inducing        0.238 0.004 0.004 0.208 0.003   (3 of 5)        within, no seed to spare
#   probsparse      0.039 0.317 0.004 0.004 0.005   (3 of 5)        within, no seed to spare
#   compressed      0.015 0.037 0.032 0.012 0.025   (2.9-9.3x)      below
#   luna            0.198 0.005 0.026 0.013 0.004   (2 of 5)        below, near
#   clustered       0.104 0.454 0.090 0.416 0.063   (15-113x)       below
# 720 steps, full attention 0.0006/0.0006/0.0005/0.0006/0.0006:
#   lowrank         0.0006 0.0006 0.0006 0.0006 0.0007   (5 of 5)   within the bar
#   linformer       0.0008 0.0007 0.0006 0.0008 0.0006   (5 of 5)   within the bar
#   nystrom         0.0007 0.0006 0.0007 0.0007 0.0008   (5 of 5)   within the bar
#   luna            0.0006 0.0006 0.0007 0.0006 0.0005   (5 of 5)   within the bar
#   inducing        0.1935 0.0006 0.0005 0.0006 0.0005   (4 of 5)   within the bar
#   probsparse      0.0120 0.0064 0.0005 0.0006 0.0006   (3 of 5)   within, no seed to spare
#   clustered_topk  0.0096 0.0026 0.0007 0.0007 0.0119   (2 of 5)   below
#   compressed      0.0083 0.0097 0.0706 0.0988 0.0051   (0 of 5)   below
#   clustered       0.0034 0.3581 0.0037 0.0022 0.0098   (0 of 5)   below
# Between them (measured, not run here): at 480 steps (full 0.0011-0.0013) luna 4 of 5,
# compressed 0.078/0.023/0.011/0.003/0.180, clustered_topk 2 of 5; luna at 600 steps 4 of 5
# and at 960 5 of 5 (full 0.0003-0.0004): from 480 steps on it is full attention's loss.
# At 80 steps (seeds 0/1/2; full 0.029/0.023/0.030) only clustered_topk (0.030/0.024/
# 0.029) and lowrank (0.043/0.044/0.047) were within 2x; the others: probsparse 0.107/
# 0.267/0.037, compressed 0.222/0.315/0.256, linformer 0.259/0.319/0.080, clustered 0.424/
# 0.688/0.277, inducing 0.442/0.375/0.038, nystrom 0.555/1.014/0.543, luna 1.123/0.740/
# 1.317 (luna's first form). A constant lr of 1e-3 or 1e-2 (full too) at 40-240 steps
# brought no kind closer.
# What each kind's numbers come from, and what was tried (80 steps, seed 0 unless said):
#   linformer   q, k, v, out start as the authors' fairseq code's (Xavier, gain 1/sqrt 2
#               on q, k, v: LinformerAttention.own_init); under txdsl's N(0, 0.02): 1.105.
#               E, F keep N(0, 1/n): lucidrains' U(+-1/sqrt k) 0.869 and fairseq's Xavier
#               1.040 (both under N(0, 0.02) projections) were no better
#   nystrom     conv: 3 0.957, iterations: 12 2.068 (worse); the fairseq init on its
#               projections 0.810, PyTorch's default 0.835/0.100/0.053 (not adopted)
#   lowrank     each factor starts as nn.Linear's default (see factored.py); the product
#               at std 0.02 split evenly between the factors: 0.082/0.084/0.077; both
#               factors N(0, 0.02): 1.107
#   probsparse  u = 6 of 8 queries attend, the other two get mean(V); the fixed, evenly
#               spaced key sample (0, 1, 2, 4, 5, 6 of 8) never measures keys 3 and 7, so
#               the queries reversing onto them (4 and 0) always measure M = 0
#               (test_equations.py::test_probsparse_never_measures_the_unsampled_keys);
#               measured over every key (same u): 0.030. Informer's own sample, drawn at
#               random per query on every forward: 0.286/0.268/0.285 (worse than fixed)
#   clustered   4 clusters for 8 queries: the queries of a cluster share one output (per
#               head and layer: 4 heads clustering apart tell the 8 queries apart over
#               two layers, which takes time: 0.002-0.010 on 4 seeds at 720 steps);
#               iterations 3 or 10: the same 0.424
#   clustered_topk  the paper's improved form (i-clustered), each query re-scoring its
#               centroid's 4 top keys (of 8); topk: 2 0.060/0.107/0.096, clusters: 2 with
#               topk: 4 0.099/0.061/0.078
#   compressed  4 slots, each a learned mix of two positions; PyTorch's default init on
#               its projections and conv 0.045/0.090/0.131, Glorot on the conv 0.129/
#               0.275/0.859 (tensor2tensor's; neither adopted)
#   inducing    H is the paper's whole MAB(I, X), its rFF and second LayerNorm included
#               (ln0 alone: 0.570); both MABs' projections start at PyTorch's nn.Linear
#               default, as the Set Transformer's code builds them (InducingAttention.
#               own_init); under txdsl's N(0, 0.02) both attentions start uniform: 2.573
#   luna        the official code's form (luna.py): the pack attends over x itself with
#               only a query projection, P pre-normed in a pre-norm layer. Its first form,
#               two full MHAs and P post-normed: 0.004/0.197/0.379/0.838/0.374; the pack's
#               keys = values projected (the code's later pc_proj) 0.245/0.004/0.088/0.132/
#               0.005; the official form with the post-norm hand-on 0.005/0.164/0.004/0.009/
#               0.017. Which seeds leave the plateau moves with the random draws: the same
#               form with its parameters drawn in another order (the old module's, three
#               unused projections first) ended 0.005/0.004/0.007/0.378/0.006, 4 of 5.
#               The pack's own head count (pheads; the code's scripts use 1, 4 or 8): 1
#               0.173/0.074/0.084/0.215/0.087, 2 0.095/0.008/0.026/0.003/0.004 (3 of 5, the
#               same coin flip; not adopted).
#               Projections start as Luna's fairseq code's (LunaAttention.own_init; the
#               first form under N(0, 0.02): 2.456), unit-scale P as the official code's
# k = n for linformer and m = p = 8 = n for inducing and luna are no compression (a loose
# setting: linformer k: 4 measured 1.103, inducing m: 4 1.999, before own_init); nystrom
# (4 of 8), compressed (stride 2), clustered (4 of 8) and probsparse (u = 6 of 8) do
# compress. A longer task was measured and not adopted: reverse n = 32, 160 steps (full
# 0.051): lowrank 0.038, compressed(stride: 4) 0.129, nystrom(landmarks: 8) 0.484,
# probsparse 0.871, clustered(clusters: 8) 1.456, linformer(k: 8) 2.383, luna 2.644,
# inducing 2.648 (before own_init). A 20-step warmup (tests/runtime/
# test_issue11_training.py) brought none closer.

# Asserted at a budget: the bar holds there with a seed to spare (4 or 5 of 5), so a
# regression fails instead of turning into an xfail; the rest are reported (an xfail with
# the numbers below the bar; exactly 3 of 5 passes without being asserted, since a machine
# whose arithmetic moves one plateau's end may not).
WITHIN_BAR = {240: {"clustered_topk", "lowrank", "linformer", "nystrom"},
              720: {"lowrank", "linformer", "nystrom", "luna", "inducing"}}


def check_bar(kind: str, got: list[tuple[float, float]], full: list[float],
              asserted: bool) -> None:
    """Every seed halves its loss; within 2x of ``full`` on 3 of 5 seeds, asserted (a
    regression fails) or reported (an xfail with the numbers)."""
    numbers = (f"{kind}: " + ", ".join(f"{i:.3f} -> {f:.4f}" for i, f in got)
               + " (full: " + ", ".join(f"{f:.4f}" for f in full) + ")")
    for initial, final in got:
        assert final < initial / 2, numbers
    within = sum(final <= 2 * f for (_, final), f in zip(got, full))
    if asserted:
        assert within >= 3, f"within 2x of full attention on {within} of 5 seeds: {numbers}"
    elif within < 3:
        pytest.xfail(f"below the bar: within 2x of full on {within} of 5 seeds: {numbers}")


def test_every_asserted_kind_is_trained():
    assert all(kinds <= TRAINED.keys() for kinds in WITHIN_BAR.values())
    assert all(kinds <= CAUSAL.keys() for kinds in CAUSAL_WITHIN.values())


@pytest.mark.slow
@pytest.mark.parametrize("steps", BUDGETS)
@pytest.mark.parametrize("kind", TRAINED)
def test_training_bar(kind, steps):
    full = [full_baseline(reverse_spec("full(heads: heads)", "full"), task="reverse",
                          steps=steps, seed=seed)[1] for seed in SEEDS]
    spec = reverse_spec(TRAINED[kind], kind)
    got = [train(txdsl.build(spec, backend="eager", seed=seed).module, task="reverse",
                 steps=steps, seed=seed) for seed in SEEDS]
    check_bar(kind, got, full, kind in WITHIN_BAR[steps])


# The causal forms on the copy task (tests/copy_task.py), under the protocol above (both
# budgets, seeds 0-4, within 2x of full attention on at least 3 seeds). Measured:
# 240 steps, full 0.0048/0.0047/0.0044/0.0039/0.0044:
#   compressed(stride: 2)  0.0056 0.0049 0.0052 0.0049 0.0043   within on every seed
#   probsparse(factor: 2)  0.0048 0.0050 0.0044 0.0042 0.0044   within on every seed; the
#                          measurement covers every past key (the causal form computes every
#                          score anyway): with a fixed sample of 6 of 16 keys, the same for
#                          every query, queries copying from an unsampled key were always lazy
#   luna(p: 8)             0.221 0.285 0.305 0.328 0.598        below (46-136x); the old
#                          eight-projection form: 0.35-0.90
# 720 steps, full 0.0007/0.0006/0.0006/0.0006/0.0006:
#   compressed             0.0008 0.0006 0.0010 0.0007 0.0005   within on every seed
#   probsparse             0.0007 0.0006 0.0006 0.0006 0.0006   within on every seed
#   luna                   0.0022 0.0156 0.0051 0.0007 0.0039   below (1 of 5): it learns the
#                          copy (100x lower than at 240), but running means over the past
#                          dilute every position while the copy needs one exactly, so it
#                          stays behind full attention
# At copy_task's 80 steps on seed 0 (full 0.045): compressed 0.616, probsparse 0.049, luna
# 1.338 (compressed passed on data seed 2 only; a 20-step warmup brought none closer).
CAUSAL = {"compressed": "compressed(heads: heads, stride: 2)",
          "probsparse": "probsparse(heads: heads, factor: 2)", "luna": "luna(heads: heads, p: 8)"}
CAUSAL_WITHIN = {240: {"compressed", "probsparse"}, 720: {"compressed", "probsparse"}}


@pytest.mark.slow
@pytest.mark.parametrize("steps", BUDGETS)
@pytest.mark.parametrize("kind", CAUSAL)
def test_causal_forms_on_the_copy_task(kind, steps):
    full = [full_baseline(copy_spec("full(heads: heads)", "full"), steps=steps, seed=seed)[1]
            for seed in SEEDS]
    got = [train(txdsl.build(copy_spec(CAUSAL[kind]), backend="eager", seed=seed).module,
                 steps=steps, seed=seed) for seed in SEEDS]
    check_bar(kind, got, full, kind in CAUSAL_WITHIN[steps])
