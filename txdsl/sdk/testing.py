"""The attention contract suite: checks every attention implementation must pass.

One suite serves three users: this repository's tests
(``tests/plugins/test_attention_contract.py``), ``txdsl verify`` (any
installed kind, built-in or third party; :func:`run_checks`) and a
plugin's own CI::

    from txdsl.sdk.testing import attention_subjects, CHECKS
    import pytest

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    @pytest.mark.parametrize("subject", attention_subjects(kinds=["mykind"]), ids=str)
    def test_contract(subject, check):
        check(subject)

A check raises ``AssertionError`` with a message saying what differs. The
cases: masks (causal, key padding, cross-attention padding, fully masked
rows give no NaN), lengths 1 and odd, cached decoding (a preallocated state
written chunk by chunk) == the uncached pass, every implementation == the
kind's ``reference`` one (same weights), ``param_count`` == the built
module's parameters, and ``state_elements`` == the decode state it allocates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .args import Dims
from .mask import AttentionMask
from .targets import BuildContext

D, H, B, T, S = 32, 4, 2, 7, 9  # odd lengths on purpose


@dataclass
class Subject:
    """One registered implementation of a kind, ready to build."""

    kind: str
    impl: str
    plugin: str
    args: Any  # the validated argument model
    build: Callable[..., Any]
    reference: Callable[..., Any] | None = None  # the kind's 'reference' factory, if another
    dims: Dims = field(default_factory=lambda: Dims(d_model=D, width=D, embed_size=D, context=64))
    family: str = "attention"

    def __str__(self) -> str:
        return f"{self.kind}[{self.impl}]"

    def make(self, seed: int = 0, factory: Callable[..., Any] | None = None) -> Any:
        torch.manual_seed(seed)
        return (factory or self.build)(self.args, BuildContext(dims=self.dims)).eval()


# The arguments a kind is built with when the suite needs more than its defaults.
BASE_ARGS = {"attention": {"heads": H}, "ffn": {"hidden": 2 * D}, "norm": {}}


def subjects(registry: Any = None, family: str = "attention", kinds: list[str] | None = None,
             example_args: dict[str, dict] | None = None) -> list[Subject]:
    """Every buildable implementation of ``family`` in ``registry`` (default: the
    installed plugins), or those of ``kinds``; ``example_args`` (kind -> arguments)
    adds arguments beyond the family's ``BASE_ARGS``."""
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    out = []
    for kind in kinds or registry.kinds(family):
        impls = registry.implementations(family, kind)
        ref = next((i for i in impls if i.impl == "reference"), None)
        for impl in impls:
            cls = registry.args(family, kind)
            args = cls.model_validate({**BASE_ARGS.get(family, {}), **getattr(cls, "example", {}),
                                       **(example_args or {}).get(kind, {})})
            out.append(Subject(kind, impl.impl, impl.plugin, args, impl.build,
                               ref.build if ref is not None and ref is not impl else None,
                               family=family,
                               **({"dims": testing_positions.DIMS} if family == "position"
                                  else {})))
    return out


def attention_subjects(registry: Any = None, kinds: list[str] | None = None,
                       example_args: dict[str, dict] | None = None) -> list[Subject]:
    """:func:`subjects` of the attention family."""
    return subjects(registry, "attention", kinds, example_args)


class NotApplicable(Exception):
    """Raised by a check that does not apply to a subject (no reference to compare with)."""


def _requires(s: Subject, *uses: str) -> None:
    """Skip a check the kind declares it can't serve (``AttentionArgs.unsupported``)."""
    unsupported = getattr(type(s.args), "unsupported", {})
    for use in uses:
        if use in unsupported:
            raise NotApplicable(f"no {use} use: {unsupported[use]}")


def _close(a: torch.Tensor, b: torch.Tensor, what: str, tol: float = 1e-5) -> None:
    if a.shape != b.shape or not torch.allclose(a, b, atol=tol, rtol=tol):
        diff = (a - b).abs().max().item() if a.shape == b.shape else f"shapes {a.shape} vs {b.shape}"
        raise AssertionError(f"{what}: outputs differ (max abs diff {diff})")


def _padding(rows: int = B, keys: int = S) -> torch.Tensor:
    pad = torch.ones(rows, keys, dtype=torch.bool)
    pad[0, keys - 3:] = False
    pad[1, :2] = False
    return pad


# ------------------------------------------------------------------- checks


def _directions(s: Subject) -> list[bool]:
    """The values of ``causal`` the kind serves."""
    unsupported = getattr(type(s.args), "unsupported", {})
    return [c for c, use in ((False, "bidirectional"), (True, "causal")) if use not in unsupported]


@torch.no_grad()
def output_shapes(s: Subject) -> None:
    """Self-attention, cross-attention and a single token give ``(B, T, d_model)``."""
    m = s.make()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    unsupported = getattr(type(s.args), "unsupported", {})
    cases = []
    if "bidirectional" not in unsupported:
        cases.append((lambda: m(x, mask=AttentionMask()), (B, T, D), "self-attention"))
    if "cross" not in unsupported:
        cases.append((lambda: m(x, memory, mask=AttentionMask()), (B, T, D), "cross-attention"))
    causal = "causal" not in unsupported
    cases.append((lambda: m(x[:, :1], mask=AttentionMask(causal=causal)), (B, 1, D), "length 1"))
    for run, want, what in cases:
        got = run()
        if tuple(got.shape) != want:
            raise AssertionError(f"{what}: output shape {tuple(got.shape)}, expected {want}")


@torch.no_grad()
def causal_mask(s: Subject) -> None:
    """With ``causal``, changing the future doesn't change the past."""
    _requires(s, "causal")
    m = s.make()
    x = torch.randn(B, T, D)
    y = x.clone()
    y[:, 3:] = torch.randn(B, T - 3, D)
    mask = AttentionMask(causal=True)
    _close(m(x, mask=mask)[:, :3], m(y, mask=mask)[:, :3], "causal: the past saw the future")


@torch.no_grad()
def key_padding(s: Subject) -> None:
    """Padded keys' content never reaches a query (self- and cross-attention)."""
    _requires(s, "padding")
    m = s.make()
    x, pad = torch.randn(B, S, D), _padding()
    y = torch.where(pad[..., None], x, torch.randn(B, S, D))
    for causal in _directions(s):
        mask = AttentionMask(causal=causal, key_padding=pad)
        _close(m(x, mask=mask)[pad], m(y, mask=mask)[pad], f"padding (causal={causal})")
    if "cross" in getattr(type(s.args), "unsupported", {}):
        return
    q = torch.randn(B, T, D)
    mask = AttentionMask(key_padding=pad)
    _close(m(q, x, mask=mask), m(q, y, mask=mask), "cross-attention padding")


@torch.no_grad()
def fully_masked_rows(s: Subject) -> None:
    """A query with no visible key gives finite numbers, not NaN."""
    _requires(s, "padding")
    m = s.make()
    x = torch.randn(B, T, D)
    pad = torch.ones(B, T, dtype=torch.bool)
    pad[1] = False
    pad[0, 0] = False
    for causal in _directions(s):
        if not torch.isfinite(m(x, mask=AttentionMask(causal=causal, key_padding=pad))).all():
            raise AssertionError(f"NaN/inf on a fully masked row (causal={causal})")
    if "cross" in getattr(type(s.args), "unsupported", {}):
        return
    none = AttentionMask(key_padding=torch.zeros(B, S, dtype=torch.bool))
    if not torch.isfinite(m(x, torch.randn(B, S, D), mask=none)).all():
        raise AssertionError("NaN/inf in cross-attention with every key padded")


@torch.no_grad()
def cached_decoding(s: Subject) -> None:
    """Writing a preallocated decode state chunk by chunk (3, 2, 1, 1 tokens) equals one pass."""
    _requires(s, "causal", "decode")
    m = s.make()
    x = torch.randn(B, T, D)
    full = m(x, mask=AttentionMask(causal=True))
    state = m.new_state(B, T + 2)  # spare slots stay hidden
    steps, t = [], 0
    for n in (3, 2, 1, 1):
        slots = torch.arange(t, t + n)
        steps.append(m(x[:, t:t + n], mask=AttentionMask(causal=True, q_slots=slots), cache=state))
        t += n
    _close(torch.cat(steps, dim=1), full[:, :t], "cached decoding vs the full pass")


@torch.no_grad()
def equals_reference(s: Subject) -> None:
    """Same weights, same output as the kind's ``reference`` implementation."""
    if s.reference is None:
        raise NotApplicable("this is the reference (or the kind has none)")
    m, ref = s.make(), s.make(seed=1, factory=s.reference)
    ref.load_state_dict(m.state_dict())
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    unsupported = getattr(type(s.args), "unsupported", {})
    padding = "padding" not in unsupported
    cases = []
    if "causal" not in unsupported:
        cases.append((None, AttentionMask(causal=True, key_padding=_padding(B, T) if padding
                                          else None), "causal+padding"))
    if "bidirectional" not in unsupported:
        cases.append((None, AttentionMask(), "no mask"))
    if "cross" not in unsupported:
        cases.append((memory, AttentionMask(key_padding=_padding() if padding else None),
                      "cross"))
    for mem, mask, what in cases:
        keys = T if mem is None else S
        allowed = mask.dense(T, keys)
        # Rows that see no key at all (padding queries) are undefined: kernels differ there.
        seen = (allowed.any(-1).expand(B, 1, T)[:, 0] if allowed is not None
                else torch.ones(B, T, dtype=torch.bool))
        _close(m(x, mem, mask=mask)[seen], ref(x, mem, mask=mask)[seen], f"vs reference ({what})")


def parameter_count(s: Subject) -> None:
    """``param_count(dims)`` equals the built module's parameter count."""
    m = s.make()
    built, said = sum(p.numel() for p in m.parameters()), s.args.param_count(s.dims)
    if built != said:
        raise AssertionError(f"param_count says {said:,}, the built module has {built:,}")


def cost_model(s: Subject) -> None:
    """FLOPs grow with length; ``state_elements`` equals the decode state allocated."""
    f1, f2 = s.args.flops_per_token(s.dims, 16), s.args.flops_per_token(s.dims, 64)
    if not (0 < f1 <= f2):
        raise AssertionError(f"flops_per_token is not positive and non-decreasing: {f1}, {f2}")
    if "decode" in getattr(type(s.args), "unsupported", {}):
        return
    state = s.make().new_state(1, 16)
    held = state.nbytes() // 4  # float32 elements
    said = s.args.state_elements(s.dims, 16)
    if held != said:
        raise AssertionError(f"state_elements says {said:,} for 16 tokens, "
                             f"the decode state holds {held:,}")


@torch.no_grad()
def same_shape(s: Subject) -> None:
    """A norm or feed-forward maps ``(B, T, d_model)`` to the same shape, finite."""
    x = torch.randn(B, T, D)
    y = s.make()(x)
    if tuple(y.shape) != (B, T, D) or not torch.isfinite(y).all():
        raise AssertionError(f"output {tuple(y.shape)} (finite: {bool(torch.isfinite(y).all())}),"
                             f" expected finite {(B, T, D)}")


@torch.no_grad()
def same_as_reference(s: Subject) -> None:
    """Same weights, same output as the kind's ``reference`` implementation."""
    if s.reference is None:
        raise NotApplicable("this is the reference (or the kind has none)")
    m, ref = s.make(), s.make(seed=1, factory=s.reference)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(B, T, D)
    _close(m(x), ref(x), "vs reference")


CHECKS = [output_shapes, causal_mask, key_padding, fully_masked_rows, cached_decoding,
          equals_reference, parameter_count, cost_model]
FAMILY_CHECKS = {
    "attention": CHECKS,
    "norm": [same_shape, same_as_reference, parameter_count],
    "ffn": [same_shape, same_as_reference, parameter_count],
}


@dataclass
class Outcome:
    """One check on one subject: passed, not applicable, or the message of its failure."""

    subject: Subject
    check: str
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_checks(items: list[Subject]) -> list[Outcome]:
    """Run the family's checks on every subject; a check that crashes fails with the error."""
    out = []
    for s in items:
        for check in FAMILY_CHECKS.get(s.family, []):
            try:
                check(s)
                out.append(Outcome(s, check.__name__))
            except NotApplicable as why:
                out.append(Outcome(s, check.__name__, skipped=str(why)))
            except Exception as exc:  # a plugin's bug is a failed check, not a crash
                msg = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
                out.append(Outcome(s, check.__name__, msg or type(exc).__name__))
    return out

# The position family: txdsl/sdk/testing_positions.py registers its checks in FAMILY_CHECKS.
from . import testing_positions  # noqa: E402,F401
