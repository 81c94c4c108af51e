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
    several competing for two busy cores. Restored after each module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
