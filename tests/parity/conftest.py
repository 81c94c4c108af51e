"""Parity tests against reference implementations (Hugging Face, torch.nn.Transformer)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for p in (str(Path(__file__).parent), str(ROOT), str(ROOT / "plugins")):
    if p not in sys.path:
        sys.path.insert(0, p)

PLUGINS = {"attention": "txdsl_attention", "norms": "txdsl_norms", "positions": "txdsl_positions",
           "ffn": "txdsl_ffn", "heads": "txdsl_heads", "embeddings": "txdsl_embeddings"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tests run tiny tensors: one intra-op thread is many times faster than
    several competing for two busy cores. Restored after each module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def registry():
    from txdsl.plugins import load_registry

    return load_registry({name: importlib.import_module(mod) for name, mod in PLUGINS.items()})
