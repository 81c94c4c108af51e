"""The fixed-budget training bar (``tests/copy_task.py``: final loss below half the
initial and within 2x of full attention's, same budget) for issue 11's variants not
covered elsewhere: memory tokens (prepend and dedicated on the copy task, the
bidirectional bottleneck on the reverse task), DeepNorm, ``shaw``, ``cope`` and RoPE with
YaRN scaling. Persistent memory (tests/plugins/test_persistent_memory.py), the Universal
Transformer (tests/runtime/test_universal.py) and MoE (tests/plugins/test_moe.py) run the
bar in their own files. The measured numbers are below; a variant that misses the bar
is an xfail carrying its numbers and the reason."""

from __future__ import annotations

import pytest

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
# Reverse task, full attention (2.789, 0.029): memory_bottleneck (2.799, 2.358) -- miss.
MISSES = {
    "cope": "per-layer CoPE tables (the default) end at 0.163, above 2x full's 0.045, in the "
            "80 steps; one table shared by the layers passes (0.058, cope_shared)",
    "deepnorm": "a post-norm stack at lr 3e-3 without warmup barely moves in 80 steps: plain "
                "residual = post ends at 2.654 here, DeepNorm's alpha/beta at 2.149",
    "rope_yarn": "RoPE on the stack instead of the learned absolute position trains slower at "
                 "this budget (plain rope() ends at 0.120, above 2x full's 0.045); YaRN "
                 "(factor 2 over an original context of 16) at 0.556",
    "memory_bottleneck": "with 2 layers the sequence reads the memory once (layer 1), after "
                         "the memory's one read of the sequence (layer 0): reversing 8 tokens "
                         "through it ends at 2.358 (8 memory tokens: 2.495)",
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
