"""Fixtures for backend tests (the helpers live in :mod:`backend_fixtures`)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from backend_fixtures import TINY_SPEC, TinyLM


@pytest.fixture
def tiny_lm() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM().eval()


@pytest.fixture
def tiny_inputs() -> dict[str, Tensor]:
    return {"input_ids": torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(1))}


@pytest.fixture
def tiny_spec(tmp_path):
    path = tmp_path / "tiny.tx"
    path.write_text(TINY_SPEC)
    return path
