"""Shared fixtures: the built-in plugins as a registry, and one torch thread per module."""

from __future__ import annotations

import importlib

import pytest

BUILTIN_COMPONENTS = {"attention": "txdsl_attention", "norms": "txdsl_norms",
                      "positions": "txdsl_positions", "ffn": "txdsl_ffn", "heads": "txdsl_heads",
                      "embeddings": "txdsl_embeddings"}


def load_test_registry():
    """The built-in component plugins, imported directly so a broken one fails loudly
    (entry-point loading would report it and carry on)."""
    from txdsl.plugins import load_registry

    return load_registry({name: importlib.import_module(mod)
                          for name, mod in BUILTIN_COMPONENTS.items()})


@pytest.fixture(scope="session")
def registry():
    return load_test_registry()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tests run tiny tensors: one intra-op thread is many times faster than
    several competing for two busy cores. Restored after each module.

    Also forgets what dynamo compiled for earlier modules: every attention kind's
    ``forward`` is one code object (the base class's), and a worker that compiled it
    for many kinds would otherwise hit dynamo's recompile limit in a later module."""
    import torch

    torch._dynamo.reset()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PlannedPlugin:
    """A plugin that declares an attention kind without building it (``planned``): what
    a spec naming a not-yet-implemented kind meets."""

    from txdsl.hookspecs import hookimpl as _hookimpl

    @staticmethod
    @_hookimpl
    def register_attention(register):
        from txdsl_attention import FullArgs

        register(name="planned", args=FullArgs)


@pytest.fixture(scope="session")
def planned_registry():
    """The built-in plugins plus :class:`PlannedPlugin` (plugin name ``planned``)."""
    from txdsl.plugins import load_registry

    modules = {name: importlib.import_module(mod) for name, mod in BUILTIN_COMPONENTS.items()}
    return load_registry({**modules, "planned": PlannedPlugin})


@pytest.fixture(autouse=True, scope="session")
def _build_cache(tmp_path_factory):
    """Builds (and the txdsl processes tests start) use a build cache of their own, not the
    user's ~/.cache/txdsl: a session's tests share it, nothing outlives the session."""
    import os

    before = os.environ.get("TXDSL_CACHE_DIR")
    os.environ["TXDSL_CACHE_DIR"] = str(tmp_path_factory.mktemp("build-cache"))
    yield
    if before is None:
        os.environ.pop("TXDSL_CACHE_DIR", None)
    else:
        os.environ["TXDSL_CACHE_DIR"] = before
