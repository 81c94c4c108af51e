"""Shared by the parity tests: where a test's IR comes from, and weight copying."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from txdsl.ir import Component, ModelIR

SPECS = Path(__file__).resolve().parents[2] / "specs"


def comp(family: str, kind: str, **args: Any) -> Component:
    return Component(family=family, kind=kind, args=args)


def parse_spec(spec: str, text: str) -> ModelIR | None:
    """``text`` (which extends ``specs/<spec>``) parsed with ``specs/`` as its base.

    ``TXDSL_PARITY_HAND_IR=1`` returns ``None`` instead, so the numerics run on
    the hand-built IRs (a check that the spec and the hand-built IR agree).
    """
    if os.environ.get("TXDSL_PARITY_HAND_IR") == "1":
        return None
    import txdsl

    return txdsl.parse(text, base_dir=str(SPECS))


def check_spec_parses(spec: str, text: str) -> None:
    """The body of each parity file's ``test_tiny_spec_parses``."""
    import txdsl

    assert (SPECS / spec).exists(), spec
    assert txdsl.parse(text, base_dir=str(SPECS)) is not None


@torch.no_grad()
def copy_(dst: torch.Tensor, src: torch.Tensor) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"shape mismatch: {tuple(dst.shape)} <- {tuple(src.shape)}")
    dst.copy_(src)


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


@torch.no_grad()
def scale_up(model: torch.nn.Module, *, std: float = 0.1,
             norm_names: tuple[str, ...] = ("LayerNorm", "layer_norm")) -> torch.nn.Module:
    """Random weights larger than a fresh init, so that a mistake shows in the outputs:
    norm weights ``1 + 0.1 N(0, 1)``, norm biases and every other tensor ``N(0, std)``."""
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if any(n in name for n in norm_names) and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.normal_(0.0, std)
    return model


def spec_ir(spec: str, text: str) -> ModelIR:
    """:func:`parse_spec` for families with no hand-built IR: skipped under
    ``TXDSL_PARITY_HAND_IR=1`` (their spec is the only source of the IR)."""
    import pytest

    ir = parse_spec(spec, text)
    if ir is None:
        pytest.skip(f"no hand-built IR for {spec}: the spec is the only source")
    return ir
