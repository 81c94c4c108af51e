"""Forward fusion of the ``inductor`` backend (issue 15): freezing, concatenated q/k/v, one graph.

- the GPT-2 forward is one graph without breaks (so no per-layer Python runs
  in a compiled forward), with and without an attention mask;
- ``freezing``/``concat_linear`` reach Inductor's config (with ``mode`` too);
- a frozen build equals eager within 1e-5 (float32) without autograd, still
  trains (a call with autograd compiles the ordinary graph, gradients equal
  eager's), and sees weights changed in place afterwards;
- the input check before the compiled code still refuses bad inputs.
"""

from __future__ import annotations

import shutil

import pytest
import torch

import txdsl
from txdsl.backends import parse_options

from txdsl_backends.inductor import InductorBackend, InductorOptions

SPEC = """import "gpt2.tx"
model tiny_gpt2 extends gpt2 {
  layers = 2; d_model = 32; heads = 4; vocab = 97; context = 64
}
"""
SPECS = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "specs")

needs_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="inductor's CPU kernels need a C++ compiler")


def _ids(batch: int = 2, seq: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 97, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def eager():
    built = txdsl.build(SPEC, base_dir=SPECS, backend="eager", seed=3, progress=False)
    with torch.no_grad():  # larger weights than the init, so a wrong fusion shows
        for p in built.module.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return built


@pytest.mark.parametrize("mask", [False, True])
def test_gpt2_forward_is_one_graph(eager, mask):
    ids = _ids()
    kw = {"attention_mask": torch.ones_like(ids)} if mask else {}
    torch._dynamo.reset()
    explained = torch._dynamo.explain(eager.module)(input_ids=ids, **kw)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_fusion_flags_reach_inductor_config():
    assert InductorOptions().inductor_config() is None and InductorOptions().compile_mode() is None
    frozen = InductorOptions(freezing=True, concat_linear=True, options={"max_autotune": True})
    assert frozen.inductor_config() == {"max_autotune": True, "freezing": True,
                                        "cpp.enable_concat_linear": True}
    tuned = InductorOptions(freezing=True, mode="max-autotune-no-cudagraphs")
    assert tuned.compile_mode() is None  # torch.compile takes mode or options, not both
    assert tuned.inductor_config() == {"max_autotune": True, "coordinate_descent_tuning": True,
                                       "freezing": True}
    plain = InductorOptions(mode="max-autotune-no-cudagraphs")
    assert plain.compile_mode() == "max-autotune-no-cudagraphs" and plain.inductor_config() is None


def test_concat_linear_needs_freezing():
    with pytest.raises(Exception, match="concat_linear needs freezing"):
        parse_options(InductorBackend(), ["concat_linear=true"])


def test_compiled_build_still_checks_inputs(eager):
    built = txdsl.build(SPEC, base_dir=SPECS, backend="inductor", seed=3, progress=False,
                        options={"warmup": False, "freezing": True})
    with pytest.raises(ValueError, match="input_ids contains 97"):
        built(input_ids=torch.full((1, 4), 97))  # refused before anything compiles
    with pytest.raises(TypeError):
        built(input_idz=_ids())


@needs_compiler
@pytest.mark.slow
def test_frozen_build_equals_eager_trains_and_sees_new_weights(eager):
    built = txdsl.build(SPEC, base_dir=SPECS, backend="inductor", seed=3, progress=False,
                        options={"dynamic": False, "warmup": False, "freezing": True,
                                 "concat_linear": True})
    built.module.load_state_dict(eager.module.state_dict())
    ids = _ids()
    with torch.no_grad():
        want = eager.module(input_ids=ids).logits
        got = built(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    # with autograd: not frozen, gradients flow to the parameters as in eager
    built.module.zero_grad()
    eager.module.zero_grad()
    built(input_ids=ids).logits.square().mean().backward()
    eager.module(input_ids=ids).logits.square().mean().backward()
    for (name, p), q in zip(built.module.named_parameters(), eager.module.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)

    with torch.no_grad():  # weights changed in place after the frozen compile are seen
        for p in built.module.parameters():
            p.mul_(0.5)
        again = built(input_ids=ids).logits
        torch.testing.assert_close(again, built.module(input_ids=ids).logits,
                                   rtol=1e-5, atol=1e-5)
    assert (again - got).abs().max() > 1e-2
