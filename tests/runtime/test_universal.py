"""The Universal Transformer (Dehghani et al. 2019): adaptive computation time over a
shared layer, against the ACT equations written per position (Graves 2016), one step
and no halting == one layer, the ponder cost (padding excluded) in ``aux_losses``,
decoding == the full forward, one ``aot_eager`` fullgraph graph (the family's inductor
build: tests/runtime/test_catalogue_inductor.py), located errors, the spec and the copy-task bar."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from copy_task import assert_trains, copy_spec, full_baseline, train
from txdsl.errors import SpecError
from txdsl.front.unparse import to_tx
from txdsl.runtime.universal import timing_signal
from txdsl.sdk.attention import AttentionMask

SPEC = """
model ut_tiny {{
  vocab = 40; d_model = 32; heads = 4
  embedding {{ tokens = vocab }}
  decoder({steps}) {{ norm = layernorm; position = rope
               attention = full(heads: heads); ffn = mlp(hidden: 64)
               share = all; halting = {halting} }}
  head = lm
}}
"""


def build(steps=4, halting="act(threshold: 0.9, ponder: 0.5, timestep: true, bias: 0.0)"):
    model = txdsl.build(SPEC.format(steps=steps, halting=halting), backend="eager",
                        seed=0).module.eval()
    with torch.no_grad():  # halting probabilities that vary by position
        model.decoder.halting.halting_weight.normal_(0, 1.0)
    return model


@pytest.fixture(scope="module")
def ut():
    return build()


def naive_act(model, x, real):
    """Graves' ACT per position with Python scalars over the states the layer produces."""
    stack, act = model.decoder, model.decoder.halting
    N, (B, T, d) = len(stack.layers), x.shape
    pos = torch.arange(T)[None]
    from txdsl.sdk.positions import PositionContext
    ctx = PositionContext.build(stack.position, pos, pos, x.dtype)
    mask = AttentionMask(causal=True, key_padding=None if bool(real.all()) else real)
    inputs, outputs, h = [], [], x
    for n in range(N):
        h = h + timing_signal(n, d)
        inputs.append(h)
        h = stack.layers[n](h, mask=mask, position=ctx)
        outputs.append(h)
    out = torch.zeros_like(x)
    costs, halted_at = [], set()
    for b in range(B):
        for t in range(T):
            total, weights = 0.0, []
            for n in range(N):
                p = torch.sigmoid(inputs[n][b, t] @ act.halting_weight + act.halting_bias).item()
                if n == N - 1 or total + p > act.threshold:
                    weights.append(1 - total)
                    break
                total += p
                weights.append(p)
            for n, w in enumerate(weights):
                out[b, t] += w * outputs[n][b, t]
            costs.append((len(weights) + weights[-1], bool(real[b, t])))
            halted_at.add(len(weights))
    ponder = sum(c for c, r in costs if r) / sum(r for _, r in costs)
    naive_act.halted_at = sorted(halted_at)
    return out, act.ponder * ponder


def test_act_is_the_equations_per_position(ut):
    x = torch.randn(2, 7, 32)
    real = torch.ones(2, 7, dtype=torch.bool)
    real[1, :2] = False
    from txdsl.sdk.attention import StackState
    state = StackState()
    with torch.no_grad():
        stack = ut.decoder
        final, stack.final_norm = stack.final_norm, None
        try:
            got, _ = stack(x, state=state, attention_mask=None)
            state_pad = StackState()
            stack(x, state=state_pad, attention_mask=real.long())
        finally:
            stack.final_norm = final
        want, ponder = naive_act(ut, x, torch.ones(2, 7, dtype=torch.bool))
        _, ponder_pad = naive_act(ut, x, real)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state.aux_losses["ponder"], torch.tensor(ponder),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state_pad.aux_losses["ponder"], torch.tensor(ponder_pad),
                               atol=1e-5, rtol=1e-5)
    assert len(naive_act.halted_at) > 1, naive_act.halted_at  # positions halt at different steps


def test_one_step_without_halting_is_one_layer():
    one = build(steps=1, halting="act(timestep: false)")
    plain = txdsl.build(SPEC.format(steps=1, halting="none"), backend="eager",
                        seed=0).module.eval()
    missing = plain.load_state_dict(one.state_dict(), strict=False)
    assert sorted(missing.unexpected_keys) == ["decoder.halting.halting_bias",
                                               "decoder.halting.halting_weight"]
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        out = one(input_ids=ids)
        torch.testing.assert_close(out.logits, plain(input_ids=ids).logits, atol=1e-6, rtol=1e-6)
    assert out.aux_losses["ponder"].item() == pytest.approx(0.01 * 2.0)  # N + R = 1 + (1 - 0)


def test_decoding_equals_the_full_forward_and_compiles(ut):
    ids = torch.randint(0, 40, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        full = ut(input_ids=ids, attention_mask=mask).logits
        cache = ut.new_cache(batch=2, capacity=8)
        steps = torch.cat([ut(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                              past_key_values=cache, use_cache=True).logits for t in range(8)], 1)
    torch.testing.assert_close(steps[0], full[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steps[1, 3:], full[1, 3:], atol=1e-5, rtol=1e-5)
    compiled = torch.compile(ut.train(), backend="aot_eager", fullgraph=True)
    out = compiled(input_ids=ids)
    (out.logits.square().mean() + out.aux_loss).backward()
    assert ut.decoder.halting.halting_weight.grad.abs().sum() > 0
    ut.zero_grad(set_to_none=True)
    ut.eval()


@pytest.mark.parametrize("halting,expect", [
    ("act(threshold: 2.0)", "threshold must be in (0, 1], got 2.0"),
    ("act(treshold: 0.5)", "act() has no argument 'treshold'"),
    ("act(ponder: -1.0)", "can't be negative"),
    ("sometimes", "halting must be none or act("),
])
def test_bad_halting_is_a_located_error(halting, expect):
    with pytest.raises(SpecError) as err:
        txdsl.parse(SPEC.format(steps=2, halting=halting))
    assert expect in str(err.value) and ":7:" in str(err.value)


def test_the_spec_round_trips_and_counts_the_halting_unit():
    path = Path(__file__).resolve().parents[2] / "specs" / "universal_transformer.tx"
    ir = txdsl.parse_file(path)
    assert ir.decoder.halting.threshold == 0.99 and len(ir.decoder.layers) == 8
    assert all(layer.shares == 0 for layer in ir.decoder.layers[1:])
    assert txdsl.parse(to_tx(ir)) == ir
    small = txdsl.parse(SPEC.format(steps=3, halting="act"))
    built = txdsl.build(SPEC.format(steps=3, halting="act"), backend="eager").module
    from txdsl.front.estimate import estimate
    from txdsl.plugins import get_registry
    assert estimate(small, get_registry()).params == sum(p.numel() for p in built.parameters())


def test_trains_on_the_copy_task():
    # Without the step signal: with it (a constant +-1 vector over embeddings of scale
    # 0.02) the loss goes 2.756 -> 2.654 in the 80 steps (README, Universal Transformer).
    spec = copy_spec("full(heads: heads)", name="ut").replace(
        "final_norm = layernorm", "final_norm = layernorm; share = all; "
        "halting = act(threshold: 0.99, ponder: 0.01, timestep: false)")
    model = txdsl.build(spec, backend="eager", seed=0).module
    variant = train(model, aux_weight=1.0)
    full = full_baseline(copy_spec("full(heads: heads)", name="full"))
    print(f"universal transformer copy task: {variant}, full: {full}")
    assert_trains(variant, full)
