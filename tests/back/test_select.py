"""Kernel selection: priorities, targets, forcing, errors, and the explanation."""

from __future__ import annotations

import importlib
import json

import pytest

from ir_helpers import comp, decoder_only
from txdsl.back.construct import construct
from txdsl.errors import SpecError
from txdsl.hookspecs import hookimpl
from txdsl.plugins import load_registry
from txdsl.sdk import Target, Targets
from txdsl.back.select import KernelPlan, select
from txdsl_attention import FullArgs, ReferenceAttention
from txdsl_norms import RMSNormArgs


class FakeKernels:
    """A third-party plugin adding implementations that only some targets can run."""

    @hookimpl
    def register_attention(self, register):
        register(name="full", args=FullArgs, build=ReferenceAttention.from_args, impl="triton",
                 targets=Targets(devices=frozenset({"cuda"}), requires=("no_such_module_x",)),
                 priority=20)
        register(name="full", args=FullArgs, build=ReferenceAttention.from_args, impl="fp32",
                 targets=Targets(dtypes=frozenset({"float32"})), priority=5)

    @hookimpl
    def register_norms(self, register):
        register(name="cuda_rms", args=RMSNormArgs, build=lambda a, c: None, impl="fused",
                 targets=Targets(devices=frozenset({"cuda"})))


@pytest.fixture(scope="module")
def fake_registry(registry):
    modules = {name: importlib.import_module(info.module) for name, info in registry.plugins.items()}
    return load_registry({**modules, "fake_kernels": FakeKernels()})


def test_best_priority_that_runs_on_the_target(fake_registry):
    plan = select(decoder_only(), Target(), registry=fake_registry)
    choice = plan.choice("attention", "full")
    assert choice.impl == "sdpa" and choice.plugin == "attention"
    why_not = {c.impl: c.reasons for c in choice.candidates if not c.taken}
    assert why_not["triton"] == ["device cpu not in ['cuda']", "needs the 'no_such_module_x' package"]
    assert why_not["fp32"] == ["priority 5 < 10"] and why_not["reference"] == ["priority 0 < 10"]
    assert why_not["flex"] == ["on CPU torch 2.13's FlexAttention can't compile a mask made "
                               "inside the model"]
    assert [c.impl for c in choice.candidates] == ["triton", "sdpa", "flex", "fp32", "reference"]
    assert plan.impl_for("norm", "layernorm") == "reference"


def test_target_dtype_rejects(fake_registry):
    plan = select(decoder_only(), Target(dtype="bfloat16"), registry=fake_registry)
    fp32 = next(c for c in plan.choice("attention", "full").candidates if c.impl == "fp32")
    assert not fp32.taken and fp32.reasons == ["dtype bfloat16 not in ['float32']"]


def test_force_by_family_and_by_kind(fake_registry):
    plan = select(decoder_only(), registry=fake_registry, force={"attention": "reference"})
    choice = plan.choice("attention", "full")
    assert choice.impl == "reference" and choice.reasons == ["forced by 'attention'"]
    plan = select(decoder_only(), registry=fake_registry,
                  force={"attention": "reference", "attention.full": "fp32"})
    assert plan.impl_for("attention", "full") == "fp32"


def test_force_errors(fake_registry):
    with pytest.raises(SpecError, match="has no implementation 'flash'") as err:
        select(decoder_only(), registry=fake_registry, force={"attention": "flash"})
    assert ("available implementations: triton [cannot run here], sdpa, flex [cannot run here], "
            "fp32, reference") in str(err.value)
    with pytest.raises(SpecError, match="'triton' .* cannot run on this target: device cpu"):
        select(decoder_only(), registry=fake_registry, force={"attention.full": "triton"})
    with pytest.raises(ValueError, match="unknown family 'atention'"):
        select(decoder_only(), registry=fake_registry, force={"atention": "reference"})


def test_no_implementation_for_the_target(fake_registry):
    ir = decoder_only(norm=comp("norm", "cuda_rms"))
    with pytest.raises(SpecError, match="no implementation of norm 'cuda_rms' can run on "
                                        "device=cpu") as err:
        select(ir, registry=fake_registry)
    assert "fused: device cpu not in ['cuda']" in str(err.value)
    plan = select(ir, Target(device="cuda"), registry=fake_registry)
    assert plan.impl_for("norm", "cuda_rms") == "fused"


def test_declared_and_unknown_kinds(planned_registry):
    registry = planned_registry
    with pytest.raises(SpecError, match=r"attention 'planned' has no implementation yet "
                                        r"\(declared by plugin 'planned'\)"):
        select(decoder_only(attention=comp("attention", "planned", heads=4)),
               registry=registry)
    with pytest.raises(SpecError, match="unknown norm 'layernrom'") as err:
        select(decoder_only(norm=comp("norm", "layernrom")), registry=registry)
    assert "did you mean 'layernorm'" in err.value.render()


def test_plan_is_json_and_explains(fake_registry):
    plan = select(decoder_only(), registry=fake_registry)
    data = json.loads(plan.model_dump_json())
    assert data["target"]["device"] == "cpu"
    assert KernelPlan.model_validate(data) == plan
    kinds = [(c.family, c.kind) for c in plan.choices]
    assert kinds == [("position", "learned"), ("norm", "layernorm"), ("attention", "full"),
                     ("ffn", "mlp"), ("head", "lm")]  # each distinct kind once, in build order
    text = plan.explain()
    assert "attention full" in text and "sdpa" in text
    assert "- triton" in text and "device cpu not in ['cuda']" in text
    with pytest.raises(KeyError):
        plan.impl_for("attention", "linear")


def test_construct_builds_the_planned_implementation(registry):
    model = construct(decoder_only(), registry=registry, force={"attention": "reference"})
    assert type(model.decoder.layers[0].attention).__name__ == "ReferenceAttention"
    assert model.plan.impl_for("attention", "full") == "reference"
    plan = select(decoder_only(), registry=registry)
    model = construct(decoder_only(), plan, registry=registry)
    assert type(model.decoder.layers[0].attention).__name__ == "SDPAAttention"
    other = select(decoder_only(norm=comp("norm", "rmsnorm")), registry=registry)
    with pytest.raises(SpecError, match="plan has no implementation for norm 'layernorm'"):
        construct(decoder_only(), other, registry=registry)
