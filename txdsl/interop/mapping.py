"""Key mappings between a Hugging Face state dict and txdsl's: declared once, run both ways.

A family's plugin declares a list of rules (:class:`Rename`, :class:`Fused`);
``{i}`` (and any other ``{name}``) in a key is a layer placeholder expanded
over the counts the family gives (``{"i": 12}``). The same rules convert HF
-> txdsl (:func:`to_ours`) and txdsl -> HF (:func:`to_theirs`):

- ``Rename(ours, theirs, transpose=False, unbatch=False)``: one tensor,
  transposed for GPT-2's ``Conv1D`` (which stores ``(in, out)``); ``unbatch``:
  HF keeps a leading dimension of 1 (ViT's ``position_embeddings (1, N, d)``);
  ``rope_heads=H``: a q or k projection whose checkpoint pairs rotary
  dimensions ``(2i, 2i+1)`` (Meta's original LLaMA files, GPT-J) where txdsl's
  ``rope`` pairs ``(i, i + hd/2)`` (``rotate_half``): its rows are permuted
  within each of the ``H`` heads (the permutation HF's LLaMA converter applies);
  ``heads=H``: HF keeps the heads as their own dimension, ``(d, H, hd)`` where
  txdsl's matrix is ``(d, H * hd)`` before ``transpose`` (XLNet's q, k, v, o, r);
- ``Fused(ours=(q, k, v), theirs, sizes=None, dim=0, transpose=False)``: one
  HF tensor is several of ours concatenated along ``dim`` (GPT-2's
  ``c_attn``); ``sizes`` gives unequal parts (grouped-query heads:
  ``(H * hd, KV * hd, KV * hd)``), ``None`` equal ones.

Nothing is guessed: a HF key no rule reads, a rule whose key is absent, a
txdsl parameter no rule fills and a shape that differs are collected and
raised together as one :class:`MappingError` naming every key.
"""

from __future__ import annotations

import itertools
import re
import string
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, Union

import torch
from torch import Tensor

from ..back.backends import BuildError


class MappingError(BuildError):
    """A checkpoint doesn't fit the model: the keys and shapes that don't, all at once."""


@dataclass(frozen=True)
class Rename:
    """txdsl's ``ours`` is HF's ``theirs`` (transposed if ``transpose``)."""

    ours: str
    theirs: str
    transpose: bool = False
    unbatch: bool = False
    rope_heads: int = 0
    heads: int = 0


def interleaved_to_half(w: Tensor, heads: int) -> Tensor:
    """Rows ``(H * hd, ...)`` paired ``(2i, 2i+1)`` per head -> paired ``(i, i + hd/2)``."""
    hd = w.shape[0] // heads
    return w.reshape(heads, hd // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def half_to_interleaved(w: Tensor, heads: int) -> Tensor:
    """The inverse of :func:`interleaved_to_half`."""
    hd = w.shape[0] // heads
    return w.reshape(heads, 2, hd // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


@dataclass(frozen=True)
class Fused:
    """HF's ``theirs`` is ``cat(ours..., dim)`` (in txdsl's orientation, then transposed
    if ``transpose``); ``sizes`` the parts' lengths along ``dim`` (default: equal)."""

    ours: tuple[str, ...]
    theirs: str
    sizes: tuple[int, ...] | None = None
    dim: int = 0
    transpose: bool = False


Rule = Union[Rename, Fused]


def _fields(key: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(key) if f]


def expand(rules: Iterable[Rule], counts: Mapping[str, int] | None = None) -> list[Rule]:
    """Every rule with its placeholders replaced by each layer index (``range(counts[name])``)."""
    counts = dict(counts or {})
    out: list[Rule] = []
    for rule in rules:
        keys = [rule.theirs] + ([rule.ours] if isinstance(rule, Rename) else list(rule.ours))
        names = sorted({f for k in keys for f in _fields(k)})
        unknown = [n for n in names if n not in counts]
        if unknown:
            raise ValueError(f"rule {rule} uses placeholders {unknown} with no count")
        for values in itertools.product(*(range(counts[n]) for n in names)):
            sub = dict(zip(names, values))
            if isinstance(rule, Rename):
                out.append(Rename(rule.ours.format(**sub), rule.theirs.format(**sub),
                                  rule.transpose, rule.unbatch, rule.rope_heads, rule.heads))
            else:
                out.append(Fused(tuple(k.format(**sub) for k in rule.ours),
                                 rule.theirs.format(**sub), rule.sizes, rule.dim, rule.transpose))
    return out


def _t(x: Tensor, transpose: bool) -> Tensor:
    return x.t() if transpose else x


def to_ours(rules: Sequence[Rule], theirs: Mapping[str, Tensor],
            ignore: Sequence[str] = ()) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """HF tensors -> txdsl names. Returns ``(state, missing HF keys, unexpected HF keys)``;
    HF keys matching a regular expression in ``ignore`` (buffers) are not unexpected."""
    state: dict[str, Tensor] = {}
    missing: list[str] = []
    used: set[str] = set()
    for rule in rules:
        if rule.theirs not in theirs:
            missing.append(rule.theirs)
            continue
        used.add(rule.theirs)
        x = theirs[rule.theirs]
        if isinstance(rule, Rename) and rule.heads:  # (d, H, hd) -> (d, H * hd)
            x = x.reshape(x.shape[0], -1)
        x = _t(x, rule.transpose)
        if isinstance(rule, Rename):
            x = x[0] if rule.unbatch and x.dim() > 1 and x.shape[0] == 1 else x
            state[rule.ours] = interleaved_to_half(x, rule.rope_heads) if rule.rope_heads else x
            continue
        n = len(rule.ours)
        sizes = list(rule.sizes) if rule.sizes else [x.shape[rule.dim] // n] * n
        if sum(sizes) != x.shape[rule.dim]:
            raise MappingError(f"{rule.theirs}: {list(x.shape)} can't be split into {sizes} "
                               f"along dimension {rule.dim}")
        for name, part in zip(rule.ours, torch.split(x, sizes, dim=rule.dim)):
            state[name] = part
    unexpected = sorted(k for k in theirs if k not in used
                        and not any(re.fullmatch(p, k) for p in ignore))
    return state, missing, unexpected


def to_theirs(rules: Sequence[Rule], ours: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """txdsl tensors -> HF names (the inverse of :func:`to_ours`); a missing key raises."""
    absent = [k for r in rules for k in ([r.ours] if isinstance(r, Rename) else r.ours)
              if k not in ours]
    if absent:
        raise MappingError("the model lacks the parameters the mapping exports: "
                           + ", ".join(absent))
    out: dict[str, Tensor] = {}
    for rule in rules:
        if isinstance(rule, Rename):
            x = ours[rule.ours][None] if rule.unbatch else ours[rule.ours]
            x = half_to_interleaved(x, rule.rope_heads) if rule.rope_heads else x
        else:
            x = torch.cat([ours[k] for k in rule.ours], dim=rule.dim)
        x = _t(x, rule.transpose)
        if isinstance(rule, Rename) and rule.heads:  # (d, H * hd) -> (d, H, hd)
            x = x.reshape(x.shape[0], rule.heads, -1)
        out[rule.theirs] = x.contiguous()
    return out


def tied_groups(state: Mapping[str, Tensor]) -> list[list[str]]:
    """Names in ``state`` that are one tensor (shared layers, tied heads), in state order."""
    groups: dict[tuple, list[str]] = {}
    for name, t in state.items():
        key = (("empty", name) if t.numel() == 0 else
               (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                tuple(t.stride())))
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def load_strict(module: torch.nn.Module, state: Mapping[str, Tensor], *, source: str,
                missing_theirs: Sequence[str] = (), unexpected_theirs: Sequence[str] = ()) -> None:
    """Load converted ``state`` into ``module``: every parameter group filled (a tied or
    shared group under any one of its names), every shape equal; else one error listing
    the HF keys missing and unexpected, the txdsl parameters left unfilled and the shapes."""
    own = module.state_dict()
    chosen: dict[str, str] = {}
    unfilled, shapes = [], []
    for group in tied_groups(own):
        have = next((n for n in group if n in state), None)
        if have is None:
            unfilled.append(" = ".join(group) if len(group) > 1 else group[0])
            continue
        want = tuple(own[group[0]].shape)
        if tuple(state[have].shape) != want:
            shapes.append(f"{have}: checkpoint {list(state[have].shape)}, model {list(want)}")
            continue
        chosen.update({n: have for n in group})
    extra = sorted(set(state) - set(own))
    problems = []
    if missing_theirs:
        problems.append("missing keys: " + ", ".join(missing_theirs))
    if unexpected_theirs:
        problems.append("unexpected keys: " + ", ".join(unexpected_theirs))
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes))
    if unfilled and not missing_theirs:
        problems.append("txdsl parameters no mapping rule fills: " + ", ".join(unfilled))
    if extra:
        problems.append("mapped to names the model lacks: " + ", ".join(extra))
    if problems:
        raise MappingError(f"{source}: the checkpoint doesn't fit the model: "
                           + "; ".join(problems))
    with torch.no_grad():
        module.load_state_dict({n: state[src] for n, src in chosen.items()}, strict=True)
