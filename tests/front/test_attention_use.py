"""An attention kind used where it can't serve (AttentionArgs.unsupported) is a located error."""

from __future__ import annotations

import importlib

import pytest

import txdsl
from txdsl.hookspecs import hookimpl
from txdsl.plugins import load_registry
from txdsl.sdk import AttentionArgs
from txdsl.sdk.testing import attention_subjects, run_checks
from txdsl_attention.full import ReferenceAttention


class OneWayArgs(AttentionArgs):
    """An attention that mixes future positions, so it can't be causal, nor cross-attend."""

    unsupported = {"causal": "it mixes every position into every key",
                   "cross": "its keys must be the queries' own sequence"}
    example = {"bias": False}


class OneWayPlugin:
    @hookimpl
    def register_attention(self, register):
        register(name="oneway", args=OneWayArgs, build=ReferenceAttention.from_args)


@pytest.fixture(scope="module")
def oneway_registry(registry):
    modules = {n: importlib.import_module(i.module) for n, i in registry.plugins.items()}
    return load_registry({**modules, "oneway": OneWayPlugin()})


SPEC = """
model m {{
  vocab = 50; d_model = 32; heads = 4; layers = 2
  embedding {{ tokens = vocab; position = learned(max_len: 16) }}
  {stack}(layers) {{ residual = pre; norm = layernorm; attention = oneway(heads: heads)
                     ffn = mlp(hidden: 64) }}
  heads {{ lm = lm(tied: true) }}
}}
"""


def test_refused_in_a_causal_stack(oneway_registry):
    with pytest.raises(txdsl.SpecError) as err:
        txdsl.parse(SPEC.format(stack="decoder"), registry=oneway_registry)
    assert ("attention 'oneway' can't be used in a causal stack: it mixes every position "
            "into every key") in err.value.render()
    assert err.value.line == 5  # the attention's own line


def test_accepted_in_a_bidirectional_stack(oneway_registry):
    ir = txdsl.parse(SPEC.format(stack="encoder"), registry=oneway_registry)
    assert ir.encoder.layers[0].attention.kind == "oneway"


def test_contract_suite_skips_what_the_kind_declares_unsupported(oneway_registry):
    subjects = attention_subjects(oneway_registry, kinds=["oneway"])
    assert subjects[0].args.bias is False  # built with the kind's example arguments
    outcomes = {o.check: o for o in run_checks(subjects)}
    assert outcomes["causal_mask"].skipped and outcomes["cached_decoding"].skipped
    assert all(o.ok for o in outcomes.values()), [o.error for o in outcomes.values()]
