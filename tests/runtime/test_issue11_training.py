"""The fixed-budget training bar (``tests/copy_task.py``: final loss below half the
initial and within 2x of full attention's, same budget) for issue 11's variants not
covered elsewhere: memory tokens (prepend and dedicated on the copy task, the
bidirectional bottleneck on the reverse task), DeepNorm, ``shaw``, ``cope`` and RoPE with
YaRN scaling. Persistent memory (tests/plugins/test_persistent_memory.py), the Universal
Transformer (tests/runtime/test_universal.py) and MoE (tests/plugins/test_moe.py) run the
bar in their own files. The measured numbers are below; a variant that misses the bar
is an xfail carrying its numbers and the reason. The copy decoders behind the misses
(RoPE on the stack, post-norm, DeepNorm, per-layer CoPE) are checked against the same
decoder written out by hand (the last test), so a miss is not a computation bug."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import txdsl
from copy_task import assert_trains, copy_spec, full_baseline, train

FULL = copy_spec("full(heads: heads)", name="full")
NO_LEARNED = "; position = learned(max_len: context)"
REVERSE = """
model reverse_{name} {{
  vocab = 16; d_model = 64; heads = 4; layers = 2; context = 8
  embedding {{ tokens = vocab; position = learned(max_len: context) }}
  encoder(layers) {{
    residual = pre; norm = layernorm
    attention = full(heads: heads)
    ffn = mlp(hidden: 2 * d_model, act: gelu)
    final_norm = layernorm
    {extra}
  }}
  heads {{ lm = lm(tied: true) }}
}}
"""


def in_decoder(extra: str, spec: str = FULL) -> str:
    return spec.replace("final_norm = layernorm", f"final_norm = layernorm\n    {extra}")


def stack_position(position: str, attention: str = "full(heads: heads)") -> str:
    """The copy decoder with ``position`` on the stack instead of the learned one."""
    spec = copy_spec(attention, name="pos").replace(NO_LEARNED, "")
    return in_decoder(f"position = {position}", spec)


VARIANTS = {
    "memory_prepend": in_decoder("memory_tokens = 4; memory_form = prepend"),
    "memory_dedicated": in_decoder("memory_tokens = 4; memory_form = dedicated"),
    "deepnorm": FULL.replace("residual = pre", "residual = deepnorm"),
    "shaw": stack_position("shaw(max_distance: 16)", "relative(heads: heads)"),
    "cope": stack_position("cope(max_positions: 17)", "relative(heads: heads)"),
    "cope_shared": stack_position("cope(max_positions: 17, per_layer: false)",
                                  "relative(heads: heads)"),
    "rope_yarn": stack_position("rope(scaling: yarn, factor: 2.0, original_context: 16)"),
}
SLOW = {"cope", "cope_shared"}  # > 5 s each (the CoPE term's cumulative sums)
# Measured (initial, final), 80 steps, seed 0, this machine; full attention (2.797, 0.045):
#   memory_prepend (2.789, 0.041)  memory_dedicated (2.781, 0.054)  shaw (2.808, 0.039)
#   cope_shared (2.796, 0.058)     -- pass
#   cope (2.809, 0.163)  deepnorm (2.798, 2.149)  rope_yarn (2.779, 0.556)  -- miss, below
#   (plain rope() on the stack, not a test: 0.120)
# Reverse task, full attention (2.789, 0.029): memory_bottleneck (2.799, 2.358) -- miss.
# Data seeds 1, 2 (train(seed=...), same weights; full 0.053, 0.046): cope 0.123, 0.059;
#   cope_shared 0.055, 0.154; memory_dedicated 0.175, 0.066; deepnorm 0.315, 1.109;
#   rope 0.614, 0.111; rope_yarn 0.525, 0.541; bottleneck 2.597, 2.516 (full 0.032, 0.027).
# A linear learning-rate warmup (copy_task.train(warmup=...), opt-in) was measured and not
# adopted. warmup 20 of the 80 steps, seeds 0/1/2: full 0.034/0.038/0.038, cope
# 0.061/0.121/0.114 (passes on seed 0 only), cope_shared 0.042/0.039/0.056, memory_prepend
# 0.047/0.050/0.049, memory_dedicated 0.049/0.047/0.037, shaw 0.032/0.029/0.031, rope
# 0.094/0.106/0.117, rope_yarn 0.517/0.496/0.463, deepnorm 2.648/2.564/1.978, bottleneck
# 2.304/2.358/2.217 (full 0.022/0.025/0.022): no miss passes on every seed; everything
# passing today still passes (also in the other files using copy_task). warmup 10:
# full 0.038, cope 0.112, cope_shared 0.258 (starts missing), deepnorm 2.620, rope_yarn
# 0.482; warmup 5: cope 0.689; warmup 10 + cosine decay: full 0.557 (too short a budget).
MISSES = {
    "cope": "per-layer CoPE tables (the default) end at 0.163, above 2x full's 0.045, in the "
            "80 steps; near the bar, not a bug: the computation equals CoPE's equations "
            "written out (test below). Over data seeds 0/1/2 with and without warmup it "
            "misses 4 of 6 runs (passes seed 2: 0.059, and warmup 20 seed 0: 0.061), one "
            "shared table 1 of 6 (seed 2: 0.154)",
    "deepnorm": "a post-norm stack sits on the copy task's plateau (~2.65, the unigram "
                "entropy ln 14 = 2.64) for most of the 80 steps: plain residual = post ends "
                "at 2.654, a hand-written post-norm decoder at 2.271, DeepNorm at 2.149 "
                "(data seeds 1, 2: 0.315, 1.109). Not warmup or step size (Xiong et al. "
                "2020): warmup 5-40 steps 2.41-2.65, lr 1e-3 2.614, 3e-4 2.660. With 300 "
                "steps DeepNorm reaches 0.005 (full 0.003), post-norm 1.186",
    "rope_yarn": "RoPE on the stack instead of the learned absolute position trains slower at "
                 "this budget: plain rope() ends at 0.120 (seeds 1, 2: 0.614, 0.111), above "
                 "2x full's 0.045, and equals a hand-written rotate-half RoPE decoder "
                 "(test below); hand-written with PyTorch's default init, RoPE is ~2x a "
                 "learned position too (0.032 vs 0.015). With head_dim 16 and theta 1e4 few "
                 "frequencies resolve the copy's distance 8 (theta 100: 0.083, 1000: 0.106). "
                 "YaRN (factor 2 over an original context of 16) interpolates the low "
                 "frequencies further: 0.556",
    "memory_bottleneck": "with 2 layers the sequence reads the memory once (layer 1), after "
                         "the memory's one read of the sequence (layer 0): reversing 8 tokens "
                         "through it ends at 2.358 (8 memory tokens: 2.495; warmup 20: 2.304)",
}


def check_bar(name: str, variant: tuple[float, float], full: tuple[float, float]) -> None:
    """The bar, unchanged; a recorded miss is an xfail carrying its numbers and reason."""
    print(f"{name}: {variant}, full: {full}")
    try:
        assert_trains(variant, full)
    except AssertionError as miss:
        if name not in MISSES:
            raise
        pytest.xfail(f"{name} misses the bar ({miss}; measured {variant[0]:.3f} -> "
                     f"{variant[1]:.3f}, full {full[1]:.3f}): {MISSES[name]}")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(VARIANTS)])
def test_copy_task_bar(name):
    variant = train(txdsl.build(VARIANTS[name], backend="eager", seed=0).module)
    check_bar(name, variant, full_baseline(FULL))


def test_memory_bottleneck_reverse_task_bar():
    spec = REVERSE.format(name="bottleneck", extra="memory_tokens = 4; memory_form = bottleneck")
    variant = train(txdsl.build(spec, backend="eager", seed=0).module, task="reverse")
    full = full_baseline(REVERSE.format(name="full", extra=""), task="reverse")
    check_bar("memory_bottleneck", variant, full)


# Looking for a bug behind the misses: the copy decoder written by hand (rotate-half
# RoPE on q and k at positions 0..T-1 in both layers; post-norm and DeepNorm's
# LN(alpha x + f(x)); CoPE by its equations, one table per layer), loaded with the
# built model's weights (scaled up 3x so mistakes show), gives the same logits. Trained
# under the same protocol (tests/copy_task.py, seed 0) the hand-written RoPE decoder with
# these weights ends at the same 0.120; with PyTorch's default init instead of N(0, 0.02)
# it ends at 0.032 against a learned position's 0.015, and a hand-written post-norm
# decoder at 2.271 (300 steps: 0.005): the misses are the task and budget, not a bug.
D, HEADS, HD = 64, 4, 16


def rope_by_hand(x: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    T = x.shape[-2]  # x: (B, H, T, hd); dimension i pairs with i + hd/2
    angles = torch.arange(T).float()[:, None] / theta ** (torch.arange(0, HD, 2) / HD)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


def cope_by_hand(q: torch.Tensor, a: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Golovneva et al. 2024: p_ij = sum_{t=j..i} sigmoid(a_it), a_ij + q_i . e(p_ij)."""
    out = torch.full_like(a, float("-inf"))  # (B, H, T, T), causal
    for i in range(a.shape[-1]):
        gates = torch.sigmoid(a[..., i, :i + 1])  # (B, H, i + 1)
        for j in range(i + 1):
            p = gates[..., j:].sum(-1).clamp(max=table.shape[0] - 1)  # (B, H)
            lo, hi = p.floor().long(), p.ceil().long()
            e = table[hi] * (p - lo)[..., None] + table[lo] * (hi - p)[..., None]
            e = torch.where((hi == lo)[..., None], table[lo], e)  # (B, H, hd)
            out[..., i, j] = a[..., i, j] + (q[..., i, :] * e).sum(-1)
    return out


def decoder_by_hand(model, ids: torch.Tensor, *, position: str, residual: str = "pre",
                    alpha: float = 1.0) -> torch.Tensor:
    """The copy decoder's logits ``(B, T, vocab)`` from ``model``'s weights, written out."""
    w = dict(model.named_parameters())
    lin = lambda h, name: h @ w[name + ".weight"].T + w[name + ".bias"]  # noqa: E731
    ln = lambda h, name: F.layer_norm(h, (D,), w[name + ".weight"], w[name + ".bias"])  # noqa
    B, T = ids.shape
    x = w["embedding.tokens.weight"][ids]  # (B, T, d)
    if position == "learned":
        x = x + w["embedding.position.embed.weight"][:T]
    for i in range(2):
        p = f"decoder.layers.{i}."

        def attention(h):
            q, k, v = (lin(h, p + f"attention.{n}_proj").view(B, T, HEADS, HD).transpose(1, 2)
                       for n in "qkv")  # (B, H, T, hd)
            if position == "rope":
                q, k = rope_by_hand(q), rope_by_hand(k)
            a = q @ k.transpose(-1, -2) / HD ** 0.5  # (B, H, T, T)
            if position == "cope":
                a = cope_by_hand(q, a, w["decoder.position.embeddings"][i])
            else:
                a = a.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            y = (a.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
            return lin(y, p + "attention.out_proj")

        def ffn(h):
            return lin(F.gelu(lin(h, p + "ffn.up")), p + "ffn.down")

        for f, norm in ((attention, p + "attention_norm"), (ffn, p + "ffn_norm")):
            x = x + f(ln(x, norm)) if residual == "pre" else ln(alpha * x + f(x), norm)
    return ln(x, "decoder.final_norm") @ w["embedding.tokens.weight"].T  # tied head


@pytest.mark.parametrize("name, position, residual, alpha", [
    ("full", "learned", "pre", 1.0), ("rope", "rope", "pre", 1.0),
    ("post", "learned", "post", 1.0), ("deepnorm", "learned", "deepnorm", 4 ** 0.25),
    ("cope", "cope", "pre", 1.0)])
def test_the_copy_decoders_equal_a_hand_written_one(name, position, residual, alpha):
    spec = {"full": FULL, "rope": stack_position("rope()"),
            "post": FULL.replace("residual = pre", "residual = post")}.get(name) \
        or VARIANTS[name]
    model = txdsl.build(spec, backend="eager", seed=0).module.eval()
    with torch.no_grad():
        for n, weight in model.named_parameters():
            if weight.dim() > 1:
                weight.mul_(3.0)  # (a CoPE table, too: per layer, (2, 17, hd))
        ids = torch.randint(2, 16, (2, 17), generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(model(input_ids=ids).logits, decoder_by_hand(
            model, ids, position=position, residual=residual, alpha=alpha),
            atol=2e-5, rtol=1e-5)


def test_the_warmup_is_opt_in_and_linear():
    """The protocol's default is a constant learning rate; ``warmup`` ramps it (measured
    above, not adopted)."""
    from copy_task import lr_factor
    assert [lr_factor(s, warmup=0, steps=80, cosine=False) for s in (0, 79)] == [1.0, 1.0]
    assert [lr_factor(s, warmup=20, steps=80, cosine=False) for s in (0, 9, 19, 20, 79)] \
        == [0.05, 0.5, 1.0, 1.0, 1.0]
    assert lr_factor(50, warmup=20, steps=80, cosine=True) == pytest.approx(0.5)
