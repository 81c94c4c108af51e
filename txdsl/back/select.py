"""Kernel selection: for each component kind in a model, which implementation runs.

One kind (``attention full``) may have several registered implementations (a
naive ``reference``, an ``sdpa`` one, a Triton kernel). :func:`select` picks
one per distinct ``(family, kind)`` of the IR for a :class:`Target`: the
best-priority implementation whose ``targets`` accept the target, unless the
caller forces one. Every decision is recorded with its reasons, so the build
manifest can say what runs and why (``KernelPlan.explain()``).
"""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from ..errors import SpecError, did_you_mean
from ..catalogue import declared_hint, unknown_kind
from ..ir import Component, ModelIR
from ..registry import FAMILIES, Registry
from ..sdk.targets import Target


class Candidate(BaseModel):
    """One implementation that was considered for a kind."""

    model_config = ConfigDict(frozen=True)

    impl: str
    plugin: str
    priority: int
    taken: bool
    reasons: list[str] = Field(default_factory=list)  # why taken, or why not


class Choice(BaseModel):
    """The implementation chosen for one ``(family, kind)``."""

    model_config = ConfigDict(frozen=True)

    family: str
    kind: str
    impl: str
    plugin: str
    reasons: list[str]
    candidates: list[Candidate]


class KernelPlan(BaseModel):
    """Which implementation builds every component kind of a model, and why."""

    model_config = ConfigDict(frozen=True)

    target: dict[str, Any] = Field(default_factory=dict)
    choices: list[Choice] = Field(default_factory=list)

    def choice(self, family: str, kind: str) -> Choice:
        for c in self.choices:
            if c.family == family and c.kind == kind:
                return c
        raise KeyError(f"the plan has no choice for {family} '{kind}'")

    def impl_for(self, family: str, kind: str) -> str:
        return self.choice(family, kind).impl

    def explain(self) -> str:
        """A readable table: each op, its implementation and why; the others and why not."""
        t = self.target
        lines = [f"kernel plan for device={t.get('device')} dtype={t.get('dtype')} "
                 f"backend={t.get('backend')}"]
        rows = [(f"{c.family} {c.kind}", c.impl, "; ".join(c.reasons)) for c in self.choices]
        w_op = max([len("op")] + [len(r[0]) for r in rows])
        w_impl = max([len("impl")] + [len(r[1]) for r in rows]
                     + [len(c.impl) + 2 for ch in self.choices for c in ch.candidates])
        lines.append(f"  {'op':<{w_op}}  {'impl':<{w_impl}}  why")
        for c, (op, impl, why) in zip(self.choices, rows):
            lines.append(f"  {op:<{w_op}}  {impl:<{w_impl}}  {why}")
            for cand in c.candidates:
                if not cand.taken:
                    lines.append(f"  {'':<{w_op}}  {'- ' + cand.impl:<{w_impl}}  "
                                 f"not taken: {'; '.join(cand.reasons)}")
        return "\n".join(lines)


def components(ir: ModelIR) -> Iterator[Component]:
    """Every component node of the model, in build order (duplicates included)."""
    emb = ir.embedding
    for c in (emb.patches, emb.position, emb.norm):
        if c is not None:
            yield c
    for stack in ir.stacks:
        if stack.position is not None:
            yield stack.position
        for layer in stack.layers:
            for c in (getattr(layer, "position", None), layer.norm, layer.attention,
                      layer.cross_attention, layer.ffn):
                if c is not None:
                    yield c
        if stack.final_norm is not None:
            yield stack.final_norm
    for head in ir.heads:
        yield head.head


def _target_dict(target: Target) -> dict[str, Any]:
    return {"device": target.device, "dtype": target.dtype, "backend": target.backend,
            "cuda_capability": list(target.cuda_capability) if target.cuda_capability else None}


def _check_force(force: dict[str, str], registry: Registry) -> None:
    for key in force:
        family, _, kind = key.partition(".")
        if family not in FAMILIES:
            raise ValueError(f"force key '{key}': unknown family '{family}' "
                             f"(families: {', '.join(FAMILIES)}); write 'family' or 'family.kind'")
        if kind and not registry.has(family, kind):
            hint = did_you_mean(kind, registry.kinds(family)) or "none are installed"
            raise ValueError(f"force key '{key}': unknown {family} '{kind}'; {hint}")


def _forced(force: dict[str, str], family: str, kind: str) -> tuple[str, str] | None:
    """The forced impl for this kind and the key that forced it; ``family.kind`` wins."""
    for key in (f"{family}.{kind}", family):
        if key in force:
            return force[key], key
    return None


def select(ir: ModelIR, target: Target | None = None, *, registry: Registry,
           force: dict[str, str] | None = None) -> KernelPlan:
    """Choose one implementation for every distinct ``(family, kind)`` in ``ir``.

    ``force`` maps a family (``"attention"``) or a ``family.kind``
    (``"attention.full"``) to an implementation name (``"reference"``).
    Raises :class:`SpecError` at the component's span when a kind has no
    implementation that can run on ``target``, or a forced one is unknown.
    """
    target = target or Target()
    force = dict(force or {})
    _check_force(force, registry)

    seen: dict[tuple[str, str], Component] = {}
    for comp in components(ir):
        seen.setdefault((comp.family, comp.kind), comp)

    choices = [_choose(registry, comp, target, force) for comp in seen.values()]
    return KernelPlan(target=_target_dict(target), choices=choices)


def _choose(registry: Registry, comp: Component, target: Target,
            force: dict[str, str]) -> Choice:
    family, kind = comp.family, comp.kind
    if not registry.has(family, kind):
        raise unknown_kind(family, kind, registry, comp.span)
    conflict = registry.conflict(family, kind)
    if conflict is not None:  # never let what else is installed decide what a spec builds
        raise SpecError(conflict.error(), comp.span, conflict.hint())
    impls = registry.implementations(family, kind)
    if not impls:
        declared = [i.plugin for i in registry.all() if i.family == family and i.name == kind]
        by = f" (declared by plugin '{declared[0]}')" if declared else ""
        raise SpecError(f"{family} '{kind}' has no implementation yet{by}", comp.span,
                        declared_hint(family, kind, declared[0] if declared else None))

    against = {i.impl: i.targets.reasons_against(target) for i in impls}
    forced = _forced(force, family, kind)
    available = ", ".join(f"{i.impl}" + (" [cannot run here]" if against[i.impl] else "")
                          for i in impls)
    if forced is not None:
        name, key = forced
        chosen = next((i for i in impls if i.impl == name), None)
        if chosen is None:
            raise SpecError(f"{family} '{kind}' has no implementation '{name}' "
                            f"(forced by '{key}')", comp.span,
                            f"available implementations: {available}")
        if against[name]:
            raise SpecError(f"{family} '{kind}' implementation '{name}' (forced by '{key}') "
                            f"cannot run on this target: {'; '.join(against[name])}", comp.span,
                            f"available implementations: {available}")
        why = [f"forced by '{key}'"]
    else:
        chosen = next((i for i in impls if not against[i.impl]), None)
        if chosen is None:
            details = "; ".join(f"{i.impl}: {', '.join(against[i.impl])}" for i in impls)
            raise SpecError(f"no implementation of {family} '{kind}' can run on device="
                            f"{target.device} dtype={target.dtype} backend={target.backend}",
                            comp.span, details)
        why = [f"priority {chosen.priority}, the best that supports the target"
               if len(impls) > 1 else "the only implementation"]

    candidates = []
    for i in impls:
        if i is chosen:
            candidates.append(Candidate(impl=i.impl, plugin=i.plugin, priority=i.priority,
                                        taken=True, reasons=why))
        elif against[i.impl]:
            candidates.append(Candidate(impl=i.impl, plugin=i.plugin, priority=i.priority,
                                        taken=False, reasons=against[i.impl]))
        else:
            reason = (f"not forced (forced '{chosen.impl}')" if forced is not None
                      else f"priority {i.priority} < {chosen.priority}"
                      if i.priority < chosen.priority else f"ties on priority {i.priority}; "
                      f"'{chosen.impl}' sorts first")
            candidates.append(Candidate(impl=i.impl, plugin=i.plugin, priority=i.priority,
                                        taken=False, reasons=[reason]))
    return Choice(family=family, kind=kind, impl=chosen.impl, plugin=chosen.plugin,
                  reasons=why, candidates=candidates)
