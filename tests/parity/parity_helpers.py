"""Shared by the parity tests: where a test's IR comes from, and weight copying."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from txdsl.ir import Component, ModelIR

SPECS = Path(__file__).resolve().parents[2] / "specs"


def comp(family: str, kind: str, **args: Any) -> Component:
    return Component(family=family, kind=kind, args=args)


def parse_spec(spec: str, text: str, *, strict: bool = False) -> ModelIR | None:
    """``text`` parsed with ``specs/`` as its base, if the spec and the front end exist.

    ``None`` when they don't, or (unless ``strict``) when parsing fails, with a
    warning: the numerics are then tested on the hand-built IR, and each file's
    ``test_tiny_spec_parses`` reports the failure. ``TXDSL_PARITY_HAND_IR=1``
    always uses the hand-built IRs.
    """
    if os.environ.get("TXDSL_PARITY_HAND_IR") == "1" or not (SPECS / spec).exists():
        return None
    try:
        import txdsl
        parse = txdsl.parse
    except (ImportError, AttributeError):
        return None
    try:
        return parse(text, base_dir=str(SPECS))
    except txdsl.SpecError as err:
        if strict:
            raise
        warnings.warn(f"specs/{spec} does not parse; using the hand-built IR:\n{err}")
        return None


def check_spec_parses(spec: str, text: str) -> None:
    """The body of each parity file's ``test_tiny_spec_parses``."""
    if not (SPECS / spec).exists():
        pytest.skip(f"specs/{spec} is not written yet")
    try:
        import txdsl
        txdsl.parse  # noqa: B018
    except (ImportError, AttributeError):
        pytest.skip("the front end (txdsl.parse) is not available yet")
    parse_spec(spec, text, strict=True)


@torch.no_grad()
def copy_(dst: torch.Tensor, src: torch.Tensor) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"shape mismatch: {tuple(dst.shape)} <- {tuple(src.shape)}")
    dst.copy_(src)


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
