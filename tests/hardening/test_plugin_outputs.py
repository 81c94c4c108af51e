"""Class 3: what a plugin returns is checked, not trusted.

``build()`` must return an ``nn.Module`` (not ``None``, an int or a lambda);
``param_count`` must be a plausible count (an int in [0, 1e13]) before the
memory guard believes it, and a build refuses before allocating anything.
"""

from __future__ import annotations

import importlib

import pytest
from torch import nn

from hardening_helpers import Site, cli, tiny_spec, write_spec
from txdsl.back.builder import BuildError, build
from txdsl.front.estimate import EstimateError, estimate
from txdsl.hookspecs import hookimpl
from txdsl.plugins import load_registry
from txdsl.sdk import NormArgs

BUILT: list[str] = []  # what the plugins below were asked to build


class OddArgs(NormArgs):
    """A norm whose plugin lies."""

    def param_count(self, dims):
        return LIE["count"]


LIE = {"count": 0, "returns": None}


def _odd(args, ctx):
    BUILT.append("oddnorm")
    return LIE["returns"]


class OddPlugin:
    @hookimpl
    def register_norms(self, register):
        register(name="oddnorm", args=OddArgs, build=_odd)


@pytest.fixture(scope="module")
def odd_registry(registry):
    modules = {n: importlib.import_module(i.module) for n, i in registry.plugins.items()}
    return load_registry({**modules, "odd": OddPlugin(), "backends":
                          importlib.import_module("txdsl_backends")})


@pytest.fixture(autouse=True)
def _reset():
    LIE.update(count=0, returns=None)
    BUILT.clear()


@pytest.mark.parametrize("returned", [None, 3, lambda x: x, "module"],
                         ids=["none", "int", "lambda", "str"])
def test_build_must_return_a_module(odd_registry, returned):
    LIE["returns"] = returned
    with pytest.raises(BuildError) as info:
        build(tiny_spec("oddnorm"), registry=odd_registry, progress=False)
    msg = str(info.value)
    assert "plugin 'odd'" in msg and "norm 'oddnorm'" in msg and "not a torch.nn.Module" in msg
    assert ("returned None" in msg) if returned is None else type(returned).__name__ in msg


def test_a_module_is_accepted(odd_registry):
    LIE["returns"] = nn.Identity()
    built = build(tiny_spec("oddnorm"), registry=odd_registry, progress=False)
    assert isinstance(built.module, nn.Module) and BUILT


@pytest.mark.parametrize("count", [-1, 10**13 + 1, 2.5, True, "12", None],
                         ids=["negative", "absurd", "float", "bool", "str", "none"])
def test_implausible_param_counts_are_refused_before_allocating(odd_registry, count):
    LIE["returns"] = nn.Identity()
    LIE["count"] = count
    with pytest.raises(BuildError, match=r"plugin 'odd': norm 'oddnorm' param_count returned"):
        build(tiny_spec("oddnorm"), registry=odd_registry, progress=False)
    assert BUILT == []  # refused before construction
    from txdsl import parse

    with pytest.raises(EstimateError, match="a bug in the plugin"):
        estimate(parse(tiny_spec("oddnorm"), registry=odd_registry), odd_registry)


def test_plausible_counts_pass(odd_registry):
    LIE["returns"] = nn.Identity()
    from txdsl import parse

    ir = parse(tiny_spec("oddnorm"), registry=odd_registry)
    base = estimate(ir, odd_registry).params
    LIE["count"] = 7
    assert estimate(ir, odd_registry).params == base + 3 * 7  # two sublayer norms, final norm


NONE_PLUGIN = """
from txdsl.hookspecs import hookimpl
from txdsl.sdk import NormArgs

class NoneArgs(NormArgs):
    '''Builds nothing.'''
    def param_count(self, dims):
        return 0

@hookimpl
def register_norms(register):
    register(name="nonenorm", args=NoneArgs, build=lambda args, ctx: None)
"""


def test_cli_build_with_a_plugin_returning_none_exits_1(tmp_path):
    site = Site(tmp_path)
    site.add("nonenorm", NONE_PLUGIN)
    spec = write_spec(tmp_path, "nonenorm")
    r = cli("build", str(spec), "-o", str(tmp_path / "out"), "--no-run", env=site.env())
    assert r.returncode == 1, r.stderr
    assert "plugin 'nonenorm': norm 'nonenorm'" in r.stderr and "returned None" in r.stderr
    assert not (tmp_path / "out").exists()
