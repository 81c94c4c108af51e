"""The low-rank / prototype kinds in models: validation refuses impossible uses at the
attention's line, ``txdsl verify`` passes, the specs build, and each kind meets the
fixed-budget training bar (``tests/copy_task.py``, the bidirectional ``reverse`` task)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import txdsl
from copy_task import assert_trains, copy_spec, full_baseline, train
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
                                  "pack_k": 2 ** -0.5 * (2 / 128) ** 0.5,
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


# Attention for the reverse task; full attention's baseline runs once per process.
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


# Measured (80 AdamW steps, d_model 64, 2 layers; full attention 2.789 -> 0.029, so the
# bar is <= 0.058; full at 160 steps: 0.008, so a longer budget tightens the bar as fast as
# the kinds improve), initial -> final, and at 160 steps (same task, not the bar):
#   linformer   2.780 -> 0.259  (160: 0.014)  q, k, v, out start as the authors' fairseq
#               code's (Xavier, gain 1/sqrt 2 on q, k, v: LinformerAttention.own_init);
#               under txdsl's N(0, 0.02): 1.105 (160: 0.060). E, F keep N(0, 1/n):
#               lucidrains' U(+-1/sqrt k) 0.869 and fairseq's Xavier 1.040 (both under
#               N(0, 0.02) projections) were no better
#   nystrom     2.789 -> 0.554  (160: 0.046)  conv: 3 0.957, iterations: 12 2.068 (worse);
#               the fairseq init on its projections: 0.810 (worse, not adopted)
#   lowrank     2.755 -> 0.043  within the bar (seeds 1/2: 0.044/0.047): each factor starts
#               as nn.Linear's default (see factored.py); the product at std 0.02 split
#               evenly between the factors: 0.082/0.084/0.077; both factors N(0, 0.02): 1.107
#   probsparse  2.789 -> 0.107  (160: 0.121)  a floor, and its cause: the fixed, evenly
#               spaced key sample (0, 1, 2, 4, 5, 6 of 8) never measures keys 3 and 7, so
#               the queries reversing onto them (4 and 0) always measure M = 0 and get
#               mean(V) (test_equations.py::test_probsparse_never_measures_the_unsampled_keys);
#               measured over every key instead (same u = 6): 0.030, within the bar.
#               Informer samples at random; kept fixed here (deterministic outputs)
#   clustered   2.789 -> 0.424  (160: 0.135)  4 clusters for 8 queries: shared outputs;
#               iterations 3 or 10: the same 0.424 (k-means has converged)
#   clustered_topk  2.789 -> 0.030  within the bar: the paper's improved form
#               (i-clustered), each query re-scoring its centroid's 4 top keys (of 8);
#               seeds 1/2: 0.024/0.029 (full 0.032/0.027); topk: 2 0.060/0.107/0.096,
#               clusters: 2 with topk: 4 0.099/0.061/0.078
#   compressed  2.773 -> 0.222  (160: 0.027)
#   inducing    2.779 -> 0.442  (160: 0.291)  H is the paper's whole MAB(I, X), its rFF
#               and second LayerNorm included (seeds 1/2: 0.375/0.038, 160 steps 0.089/
#               0.007); with ln0 alone (before): 0.570, 0.630/0.103 (160 steps, seed 0:
#               0.201). Both MABs' projections start at PyTorch's nn.Linear default, as the
#               Set Transformer's code builds them (InducingAttention.own_init); under
#               txdsl's N(0, 0.02) the value path crosses two attentions' v and out
#               projections (0.02^4 of scale) and both attentions start uniform: 2.573
#               (160: 2.24). The fairseq init (ln0 alone): 0.049, 0.324, 0.355 over seeds
#               0/1/2 (not the authors' code, not adopted)
#   luna        2.797 -> 1.123  (160: 0.008, full's own 0.008)  its projections start as
#               Luna's fairseq code's (LunaAttention.own_init); under N(0, 0.02): 2.456
#               (160: 1.995). Unit-scale P, the official code's
# Every kind halves its loss; only improved clustered attention and lowrank are within 2x of full
# attention's near-zero loss at this budget (at 160 steps luna and linformer are too). The test asserts what holds
# and reports (xfail, with the numbers) what doesn't, so a regression or an improvement
# shows. k = n for linformer, m = p = 8 = n for inducing and luna are no compression
# (linformer k: 4 measured 1.103 under the old init, inducing m: 4 1.999): a loose setting,
# and still below the bar; nystrom (4 of 8), compressed (stride 2), clustered (4 of 8) and
# probsparse (u = 6 of 8) do compress.
# Seeds 1/2 (build and data seed; full 0.032/0.027 with data seeds 1/2): linformer
# 0.319/0.080, inducing 0.375/0.038, luna 0.740/1.317 (with own_init); under the old init
# (data seeds only): linformer 0.967/1.208, nystrom 0.864/0.239, lowrank 0.080/0.066,
# probsparse 0.341/0.067, clustered 0.575/0.239, compressed 0.381/0.240 -- every kind misses
# the 2x on every seed.
# A longer task with a realistic ratio was measured (before own_init) and not adopted:
# reverse n = 32, 160 steps (full 2.797 -> 0.051, bar 0.102): lowrank(rank: 16) 0.038,
# compressed(stride: 4) 0.129, nystrom(landmarks: 8) 0.484, probsparse(factor: 2) 0.871,
# clustered(clusters: 8) 1.456, linformer(k: 8) 2.383, luna(p: 8) 2.644, inducing(m: 8)
# 2.648, and 12-35 s a kind (over this file's time budget). A linear learning-rate warmup
# (copy_task.train(warmup=20), opt-in, not the protocol; tests/runtime/
# test_issue11_training.py) brought none closer (measured before own_init).


# The kinds within 2x of full attention at this budget (asserted; the rest xfail with
# their numbers).
WITHIN_BAR = {"clustered_topk", "lowrank"}


@pytest.mark.parametrize("kind", TRAINED)
def test_training_bar(kind):
    full = full_baseline(reverse_spec("full(heads: heads)", "full"), task="reverse")
    model = txdsl.build(reverse_spec(TRAINED[kind], kind), backend="eager", seed=0).module
    initial, final = train(model, task="reverse")
    numbers = f"{kind}: {initial:.3f} -> {final:.3f} (full: {full[0]:.3f} -> {full[1]:.3f})"
    assert final < initial / 2, numbers
    if kind in WITHIN_BAR:  # a regression fails, it doesn't become an xfail
        assert_trains((initial, final), full)
        return
    try:
        assert_trains((initial, final), full)
    except AssertionError as why:
        pytest.xfail(f"below the bar at this budget: {numbers}; {why}")


# The causal forms on the copy task (tests/copy_task.py, 80 steps; full 2.797 -> 0.045):
#   compressed(stride: 2)  2.799 -> 0.616   halves; not within 2x (copying one position
#                                           through a block summary is lossy)
#   luna(p: 8)             2.803 -> 1.331   halves at this seed (bar for halving 1.401), not
#                                           on seeds 1/2 (build and data: 1.474, 1.502), so
#                                           not asserted; 1.849 under N(0, 0.02) projections
#                                           (see own_init); running means over the past
#                                           dilute every position, the copy needs one exactly
#   probsparse(factor: 2)  2.797 -> 0.049   passes (bar 0.090). It was 0.114, just over:
#                                           the measurement used a fixed sample of 6 of
#                                           16 keys, the same for every query, so queries
#                                           copying from an unsampled key were always lazy
#                                           (mean of V); the causal form computes every
#                                           score anyway, so it now measures every past key
#                                           (seeds 1, 2: 0.055, 0.061; full 0.047, 0.055)
#   probsparse(factor: 1)  2.797 -> 0.626   (with the sample; measured once, not a test)
#   data seeds 1/2 (full 0.053/0.046): compressed 0.204/0.077 (passes on seed 2), luna
#   2.002/1.946, probsparse 0.060/0.053; with warmup 20 (opt-in, not the protocol), seeds
#   0/1/2 (full 0.034/0.038/0.038): compressed 0.440/0.366/0.060, luna 1.769/1.848/1.786,
#   probsparse 0.043/0.041/0.045
@pytest.mark.slow
@pytest.mark.parametrize("attention, halves, passes", [
    ("compressed(heads: heads, stride: 2)", True, False),
    ("luna(heads: heads, p: 8)", False, False),
    ("probsparse(heads: heads, factor: 2)", True, True)])
def test_causal_forms_on_the_copy_task(attention, halves, passes):
    full = full_baseline(copy_spec("full(heads: heads)", "full"))
    model = txdsl.build(copy_spec(attention), backend="eager", seed=0).module
    initial, final = train(model)
    numbers = f"{attention}: {initial:.3f} -> {final:.3f} (full: {full[1]:.3f})"
    if passes:
        assert_trains((initial, final), full)
        return
    if halves:
        assert final < initial / 2, numbers
    try:
        assert_trains((initial, final), full)
    except AssertionError as why:
        pytest.xfail(f"below the bar at this budget: {numbers}; {why}")
