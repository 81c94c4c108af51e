"""Class 2: a plugin never silently takes over a name another plugin registers.

Built-in plugins win by default, the losing plugin keeps its other kinds, a
spec that uses a contested name is refused (naming both plugins) until
``TXDSL_PREFER`` says which one to use. Plugins are installed as real
distributions with entry points (see :class:`hardening_helpers.Site`).
"""

from __future__ import annotations

import importlib
import json

import pytest

from hardening_helpers import Site, cli, write_spec
from txdsl.errors import SpecError
from txdsl.plugins import load_registry

RIVAL_NORMS = """
from torch import nn
from txdsl.hookspecs import hookimpl
from txdsl.sdk import NormArgs

class RivalLayerNormArgs(NormArgs):
    '''A third party's layernorm.'''
    def param_count(self, dims):
        return 0

class OwnNormArgs(NormArgs):
    '''A kind only the third party has.'''
    def param_count(self, dims):
        return 0

def build(args, ctx):
    return nn.Identity()

@hookimpl
def register_norms(register):
    register(name="layernorm", args=RivalLayerNormArgs, build=build)
    register(name="ownnorm", args=OwnNormArgs, build=build)
"""

RIVAL_BACKEND = """
from txdsl.hookspecs import hookimpl
from txdsl_backends import EagerBackend

class Rival(EagerBackend):
    description = "a third party's eager"

@hookimpl
def register_backends(register):
    register(Rival())
"""

EXTRA_IMPL = """
from txdsl.hookspecs import hookimpl
from txdsl_norms import LayerNorm, LayerNormArgs

@hookimpl
def register_norms(register):
    register(name="layernorm", args=LayerNormArgs, build=LayerNorm.from_args, impl="fused",
             priority=-1)
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    for var in ("TXDSL_PLUGINS", "TXDSL_PREFER", "TXDSL_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "site").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return Site(tmp_path / "site")


def test_builtin_wins_and_the_loser_keeps_its_other_kinds(site):
    # "aaa" sorts before "norms": load order must not decide
    site.add("aaa", RIVAL_NORMS)
    registry = load_registry()
    norms, rival = registry.plugins["norms"], registry.plugins["aaa"]
    assert norms.error is None and rival.error is None  # nobody is "broken"
    assert registry.args("norm", "layernorm").__module__ == "txdsl_norms.layer_norm"
    assert registry.has("norm", "rmsnorm") and registry.has("norm", "ownnorm")
    assert "norm:ownnorm[reference]" in rival.registered
    assert "norm:layernorm[reference]" not in rival.registered
    (conflict,) = registry.conflicts
    assert (conflict.winner, conflict.loser, conflict.explicit) == ("norms", "aaa", False)
    assert registry.conflict("norm", "layernorm") is conflict
    assert registry.conflict("norm", "rmsnorm") is None


def test_builtin_wins_even_when_the_rival_registers_first(site, registry):
    rival = importlib.import_module(site.add("rival", RIVAL_NORMS))
    builtins = {n: importlib.import_module(i.module) for n, i in registry.plugins.items()}
    reg = load_registry({"rival": rival, **builtins})
    assert reg.plugins["norms"].builtin and not reg.plugins["rival"].builtin
    assert reg.args("norm", "layernorm").__module__ == "txdsl_norms.layer_norm"
    assert [i.plugin for i in reg.implementations("norm", "layernorm")] == ["norms"]
    assert reg.conflicts[0].winner == "norms"


def test_prefer_settles_a_conflict(site, monkeypatch):
    site.add("aaa", RIVAL_NORMS)
    for prefer, winner in (("aaa", "aaa"), ("plugin", "aaa"), ("builtin", "norms"),
                           ("norms", "norms")):
        monkeypatch.setenv("TXDSL_PREFER", prefer)
        registry = load_registry()
        (conflict,) = registry.conflicts
        assert (conflict.winner, conflict.explicit) == (winner, True)
        assert registry.conflict("norm", "layernorm") is None
        assert registry.implementations("norm", "layernorm")[0].plugin == winner


def test_two_third_parties_with_one_implementation_name(site, registry):
    code = EXTRA_IMPL
    site.add("one", code)
    site.add("two", code.replace(
        "priority=-1", "priority=-2"))
    reg = load_registry()
    conflict = reg.conflict("norm", "layernorm")
    assert conflict is not None and {conflict.winner, conflict.loser} == {"one", "two"}
    assert reg.plugins["one"].error is None and reg.plugins["two"].error is None


def test_another_implementation_of_a_kind_is_not_a_conflict(site):
    site.add("fused", EXTRA_IMPL)
    registry = load_registry()
    assert registry.conflicts == []
    assert [i.impl for i in registry.implementations("norm", "layernorm")] == \
        ["reference", "fused"]


def test_a_third_party_entry_point_named_like_a_builtin_does_not_replace_it(site):
    site.add("norms", RIVAL_NORMS, dist="acme_norms")
    registry = load_registry()
    assert registry.plugins["norms"].error is None and registry.plugins["norms"].builtin
    assert registry.has("norm", "rmsnorm") and not registry.has("norm", "ownnorm")
    (other,) = [i for n, i in registry.plugins.items() if n.startswith("norms (")]
    assert "already taken" in other.error


def test_select_refuses_a_contested_kind_at_its_place(site, registry):
    from txdsl import parse
    from txdsl.back.select import select
    from hardening_helpers import tiny_spec

    site.add("aaa", RIVAL_NORMS)
    reg = load_registry()
    ir = parse(tiny_spec(), registry=reg)
    with pytest.raises(SpecError) as info:
        select(ir, registry=reg)
    err = info.value
    assert err.line == 5 and "'norms'" in err.message and "'aaa'" in err.message
    assert "TXDSL_PREFER" in err.hint


# ---------------------------------------------------------------- the CLI, as a user runs it


def test_cli_build_fails_only_when_the_spec_uses_the_contested_name(site, tmp_path):
    site.add("aaa", RIVAL_NORMS)
    spec = write_spec(tmp_path, "layernorm")
    r = cli("build", str(spec), "-o", str(tmp_path / "out"), "--no-run", env=site.env())
    assert r.returncode == 1, r.stderr
    assert "tiny.tx:5:" in r.stderr and "'norms'" in r.stderr and "'aaa'" in r.stderr
    assert "TXDSL_PREFER" in r.stderr
    assert not (tmp_path / "out").exists()

    other = write_spec(tmp_path, "rmsnorm", "rms.tx")
    r = cli("build", str(other), "-o", str(tmp_path / "rms"), "--no-run", env=site.env())
    assert r.returncode == 0, r.stderr
    assert "norm rmsnorm -> reference (plugin norms)" in r.stdout


def test_cli_build_with_prefer_uses_the_chosen_plugin(site, tmp_path):
    site.add("aaa", RIVAL_NORMS)
    spec = write_spec(tmp_path, "layernorm")
    r = cli("build", str(spec), "-o", str(tmp_path / "a"), "--no-run",
            env=site.env(TXDSL_PREFER="aaa"))
    assert r.returncode == 0, r.stderr
    assert "norm layernorm -> reference (plugin aaa)" in r.stdout
    r = cli("build", str(spec), "-o", str(tmp_path / "b"), "--no-run",
            env=site.env(TXDSL_PREFER="builtin"))
    assert r.returncode == 0, r.stderr
    assert "norm layernorm -> reference (plugin norms)" in r.stdout
    plan = json.loads((tmp_path / "b" / "manifest.json").read_text())["plan"]
    assert {c["kind"]: c["plugin"] for c in plan["choices"]}["layernorm"] == "norms"


def test_cli_build_with_a_contested_backend_fails(site, tmp_path):
    site.add("aaa", RIVAL_BACKEND)
    spec = write_spec(tmp_path)
    r = cli("build", str(spec), "-o", str(tmp_path / "out"), "--no-run", env=site.env())
    assert r.returncode == 1, r.stderr
    assert "backend 'eager'" in r.stderr and "'backends'" in r.stderr and "'aaa'" in r.stderr
    r = cli("build", str(spec), "-o", str(tmp_path / "out"), "--no-run",
            env=site.env(TXDSL_PREFER="backends"))
    assert r.returncode == 0, r.stderr


def test_load_refuses_an_artifact_whose_kind_became_contested(site, tmp_path, monkeypatch,
                                                               registry):
    import txdsl
    from txdsl.back.artifact import ArtifactError
    from txdsl.back.load import load_artifact
    from hardening_helpers import tiny_spec

    txdsl.build(tiny_spec(), output=tmp_path / "art", progress=False)
    site.add("aaa", RIVAL_NORMS)
    with pytest.raises(ArtifactError, match="'norms'.*'aaa'|'aaa'.*'norms'"):
        load_artifact(tmp_path / "art", backend="eager", registry=load_registry())
    monkeypatch.setenv("TXDSL_PREFER", "aaa")
    with pytest.raises(ArtifactError, match="was built with implementation 'reference' of "
                                            "plugin 'norms'"):
        load_artifact(tmp_path / "art", backend="eager", registry=load_registry())
    monkeypatch.setenv("TXDSL_PREFER", "builtin")
    assert load_artifact(tmp_path / "art", backend="eager", registry=load_registry()).module

