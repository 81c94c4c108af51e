"""Plugin loading through real entry points: clashes, broken plugins, TXDSL_PLUGINS, tracing.

Each test installs throw-away distributions (a ``*.dist-info`` with an
``entry_points.txt`` in group ``txdsl``, and the module beside it) in a
temporary directory put on ``sys.path``: ``importlib.metadata`` finds them
exactly as it finds pip-installed plugins.
"""

from __future__ import annotations

import json
import logging
import textwrap
import uuid
from pathlib import Path

import pytest

from txdsl.plugins import load_registry

BACKEND = """
from txdsl.hookspecs import hookimpl

class Backend:
    name = {name!r}
    description = "a test backend"
    self_contained = False
    def available(self, target=None):
        return None

@hookimpl
def register_backends(register):
    register(Backend())
"""

ATTENTION = """
from txdsl.hookspecs import hookimpl
from txdsl.sdk import AttentionArgs

class Args(AttentionArgs):
    '''A test attention.'''

@hookimpl
def register_attention(register):
    register(name={name!r}, args=Args, build=lambda args, ctx: None)
"""

RAISES = """
from txdsl.hookspecs import hookimpl

@hookimpl
def register_attention(register):
    raise RuntimeError("kaboom")
"""

IMPORT_FAILS = """
import a_module_that_does_not_exist
"""


class Site:
    """A directory of fake installed distributions, on ``sys.path`` for one test."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch):
        self.path = path
        self.tag = uuid.uuid4().hex[:8]  # module names unique per test: no sys.modules reuse
        monkeypatch.syspath_prepend(str(path))

    def add(self, ep_name: str, code: str, version: str = "1.0") -> str:
        module = f"txdsl_test_{ep_name}_{self.tag}"
        (self.path / f"{module}.py").write_text(textwrap.dedent(code))
        dist = f"txdsl_test_{ep_name}_{self.tag}"
        info = self.path / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[txdsl]\n{ep_name} = {module}\n")
        return module


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.delenv("TXDSL_PLUGINS", raising=False)
    monkeypatch.delenv("TXDSL_TRACE_PLUGINS", raising=False)
    return Site(tmp_path, monkeypatch)


def test_entry_points_are_loaded_with_versions(site, monkeypatch):
    module = site.add("fine", BACKEND.format(name="fine_backend"), version="2.3.4")
    monkeypatch.setenv("TXDSL_PLUGINS", "fine")
    registry = load_registry()
    info = registry.plugins["fine"]
    assert (info.module, info.version, info.error) == (module, "2.3.4", None)
    assert info.registered == ["backend:fine_backend"]
    assert "fine_backend" in registry.backends


def test_a_backend_registered_twice_names_both_plugins(site, monkeypatch):
    # a name conflict is not a broken plugin (tests/hardening/test_plugin_conflicts.py)
    site.add("dup_a", BACKEND.format(name="twin"))
    site.add("dup_b", BACKEND.format(name="twin"))
    monkeypatch.setenv("TXDSL_PLUGINS", "dup_a,dup_b")
    registry = load_registry()
    assert not [i.error for i in registry.plugins.values() if i.error]
    conflict = registry.conflict("backend", "twin")
    assert "backend 'twin' is registered by two plugins" in conflict.error()
    assert "'dup_a'" in conflict.error() and "'dup_b'" in conflict.error()
    assert "twin" in registry.backends  # the first registration stands


def test_a_component_registered_twice_names_both_plugins(site, monkeypatch):
    site.add("dup_a", ATTENTION.format(name="same"))
    site.add("dup_b", ATTENTION.format(name="same"))
    monkeypatch.setenv("TXDSL_PLUGINS", "dup_a,dup_b")
    registry = load_registry()
    error = registry.conflict("attention", "same").error()
    assert "attention 'same'" in error and "'dup_a'" in error and "'dup_b'" in error


def test_a_broken_plugin_is_reported_and_the_rest_still_work(site, monkeypatch):
    site.add("boom", RAISES)
    site.add("broken", IMPORT_FAILS)
    site.add("fine", BACKEND.format(name="fine_backend"))
    monkeypatch.setenv("TXDSL_PLUGINS", "boom,broken,fine,backends")
    registry = load_registry()
    assert registry.plugins["boom"].error == \
        "raised in register_attention: RuntimeError: kaboom"
    assert registry.plugins["broken"].error.startswith("failed to load: ModuleNotFoundError")
    assert registry.plugins["fine"].error is None
    assert registry.plugins["backends"].error is None
    assert {"fine_backend", "eager", "aot"} <= set(registry.backends)


def test_txdsl_plugins_restricts_what_is_loaded(site, monkeypatch):
    site.add("fine", BACKEND.format(name="fine_backend"))
    site.add("other", BACKEND.format(name="other_backend"))
    monkeypatch.setenv("TXDSL_PLUGINS", " fine , backends ")
    registry = load_registry()
    assert sorted(registry.plugins) == ["backends", "fine"]
    assert "other_backend" not in registry.backends
    monkeypatch.delenv("TXDSL_PLUGINS")
    everything = load_registry()
    assert {"fine", "other", "backends", "attention"} <= set(everything.plugins)


def test_txdsl_trace_plugins_logs_hook_calls(site, monkeypatch, caplog):
    site.add("fine", BACKEND.format(name="fine_backend"))
    monkeypatch.setenv("TXDSL_PLUGINS", "fine")
    monkeypatch.setenv("TXDSL_TRACE_PLUGINS", "1")
    with caplog.at_level(logging.DEBUG, logger="txdsl.plugins"):
        load_registry()
    records = [r.getMessage() for r in caplog.records if r.name == "txdsl.plugins"]
    assert any("register_backends" in m and "'fine'" in m for m in records), records
    caplog.clear()
    monkeypatch.delenv("TXDSL_TRACE_PLUGINS")
    with caplog.at_level(logging.DEBUG, logger="txdsl.plugins"):
        load_registry()
    assert not [r for r in caplog.records if "register_backends" in r.getMessage()]


# ---------------------------------------------------------------- txdsl plugins


@pytest.fixture
def fresh_registry():
    from txdsl.plugins import get_registry

    get_registry.cache_clear()
    yield
    get_registry.cache_clear()


def test_cli_plugins_json_lists_everything_and_broken_ones(site, monkeypatch, capsys,
                                                            fresh_registry):
    from txdsl.cli import main

    site.add("boom", RAISES)
    site.add("fine", BACKEND.format(name="fine_backend"), version="0.9")
    monkeypatch.setenv("TXDSL_PLUGINS", "boom,fine,backends,attention")
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert sorted(by_name) == ["attention", "backends", "boom", "fine"]
    assert by_name["boom"]["ok"] is False and "kaboom" in by_name["boom"]["error"]
    assert by_name["fine"]["version"] == "0.9"
    assert by_name["fine"]["registers"] == {"backend": {"fine_backend": []}}
    assert by_name["attention"]["registers"]["attention"]["full"] == ["reference", "sdpa", "flex"]
    assert sorted(by_name["backends"]["registers"]["backend"]) == [
        "aot", "eager", "inductor", "onnx", "tensorrt"]
    assert data["backends"]["eager"] == {
        "name": "eager", "description": data["backends"]["eager"]["description"],
        "available": True, "reason": None, "options": [], "plugin": "backends"}
    assert data["backends"]["fine_backend"]["plugin"] == "fine"
    trt = data["backends"]["tensorrt"]
    import torch

    if not torch.cuda.is_available():
        assert trt["available"] is False and "needs CUDA" in trt["reason"]


def test_cli_plugins_text(site, monkeypatch, capsys, fresh_registry):
    from txdsl.cli import main

    site.add("boom", RAISES)
    monkeypatch.setenv("TXDSL_PLUGINS", "boom,backends,norms")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "  norm: layernorm [reference], rmsnorm [reference]" in out
    assert "  backend: eager (available)" in out
    assert "BROKEN" in out and "  error: raised in register_attention: RuntimeError: kaboom" in out
    assert "1 plugin failed to load; the others work" in out
