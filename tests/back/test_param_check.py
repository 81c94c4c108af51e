"""The build refuses a plugin whose ``param_count`` disagrees with the module it builds,
naming the plugin and both numbers (estimates, ``txdsl show`` and the memory guard
all believe ``param_count``)."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from ir_helpers import comp, decoder_only
from txdsl.back.construct import construct
from txdsl.backends import BuildError
from txdsl.hookspecs import hookimpl
from txdsl.plugins import load_registry
from txdsl.sdk import Attention, AttentionArgs, Dims
from txdsl_attention import ReferenceAttention


class OffByHeadsArgs(AttentionArgs):
    """Attention whose module has one extra parameter per head its cost model forgets."""

    def param_count(self, dims: Dims) -> int:
        return super().param_count(dims)  # forgets the gates


class GatedAttention(ReferenceAttention):
    def __init__(self, **parts):
        super().__init__(**parts)
        self.gate = nn.Parameter(torch.ones(self.heads))  # (H,): not in param_count


class Liar:
    @hookimpl
    def register_attention(self, register):
        register(name="gated", args=OffByHeadsArgs, build=GatedAttention.from_args)


@pytest.fixture(scope="module")
def liar_registry(registry):
    modules = {n: importlib.import_module(i.module) for n, i in registry.plugins.items()}
    return load_registry({**modules, "liar": Liar()})


def test_a_lying_param_count_is_refused_naming_the_plugin(liar_registry):
    ir = decoder_only(attention=comp("attention", "gated", heads=4))
    with pytest.raises(BuildError) as err:
        construct(ir, registry=liar_registry)
    msg = str(err.value)
    assert "attention 'gated' (plugin 'liar')" in msg
    said = OffByHeadsArgs(heads=4).param_count(Dims(d_model=ir.d_model, width=ir.d_model,
                                                    embed_size=ir.d_model))
    assert f"says {said:,}" in msg and f"has {said + 4:,}" in msg


def test_honest_plugins_build(registry):
    ir = decoder_only()
    assert isinstance(construct(ir, registry=registry), nn.Module)
    assert issubclass(ReferenceAttention, Attention)
