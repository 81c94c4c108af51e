"""The tensor-parallel plan of a model, derived from its IR: one entry per component.

Every component the builder makes (:func:`txdsl.front.dims.iter_components`,
so the module paths are the built model's) is asked for its declaration,
``args.tp_plan(dims, tp)`` (:mod:`txdsl.sdk.sharding`). The token embedding
is not a component: it is split over the vocabulary (``RowwiseParallel`` on
``nn.Embedding``: each rank looks up its rows, the partial vectors are
summed), as the LM head's weight is, so a tied head can hold the same
parameter; tied to a head without a declaration (``mlm``), it stays whole.
Nothing here imports ``torch.distributed``: ``txdsl check --tp`` runs it on
the IR alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ErrorSink, SpecError
from ..front.dims import component_args, iter_components
from ..ir import Component, ModelIR
from ..registry import Registry
from ..sdk.args import ArgError
from ..sdk.sharding import TPPlan

TOKENS = "embedding.tokens"  # the token embedding's module path


@dataclass(frozen=True)
class Entry:
    """One component's place in the plan: its module path, what it is, its declaration
    (``None``: undeclared, replicated)."""

    path: str
    what: str  # "attention 'full'", "ffn 'swiglu'", "token embedding"
    plan: TPPlan | None

    def explain(self) -> str:
        if self.plan is None:
            return f"{self.path:<34} {self.what}: no tensor-parallel declaration, replicated"
        return f"{self.path:<34} {self.what}: {self.plan.note or 'declared'}"


def model_plan(ir: ModelIR, registry: Registry, tp: int) -> list[Entry]:
    """Every component's declaration for ``tp`` ranks (errors: :func:`check_parallel`)."""
    entries: list[Entry] = []
    holders: list[str] = []  # undeclared components holding the token embedding (tied)
    tied: list[int] = []  # entries of declared ones
    for path, comp, dims in iter_components(ir, registry):
        args = component_args(registry, comp)
        plan = args.tp_plan(dims, tp)
        if getattr(args, "tied", False) is True:
            if plan and plan.styles:
                tied.append(len(entries))
            else:
                holders.append(f"{comp.family} '{comp.kind}'")
        entries.append(Entry(path, f"{comp.family} '{comp.kind}'", plan))
    for i in tied if holders else ():  # one parameter: whole for all its holders
        entries[i] = Entry(entries[i].path, entries[i].what,
                           TPPlan(note="replicated: tied to the token embedding, which "
                                       f"stays whole for {', '.join(holders)}"))
    if ir.embedding.tokens is not None:
        tokens = (TPPlan(note=f"replicated: tied to {', '.join(holders)}, which has no "
                              "tensor-parallel declaration") if holders else
                  TPPlan(styles={"": "vocab_embedding"},
                         note="vocabulary-parallel (rows split, lookups summed)"))
        entries.insert(0, Entry(TOKENS, "token embedding", tokens))
    return entries


def check_parallel(ir: ModelIR, registry: Registry, *, tp: int = 1,
                   sink: ErrorSink | None = None) -> None:
    """Refuse a model that can't be split across ``tp`` ranks, at the argument's span
    (``heads (12) is not divisible by the tensor-parallel size (5)``), before any
    process starts. Errors go to ``sink`` (raised here without one)."""
    own = ErrorSink() if sink is None else sink
    if tp < 1:
        own.add(SpecError(f"the tensor-parallel size must be at least 1, got {tp}", ir.span))
    elif tp > 1:
        for path, comp, dims in iter_components(ir, registry):
            args = component_args(registry, comp)
            plan = args.tp_plan(dims, tp)
            if plan is None:
                continue
            try:
                plan.check(tp)
            except ArgError as err:  # the sink keeps one per written place, not per layer
                own.add(_located(comp, err))
    if sink is None:
        own.check()


def _located(comp: Component, err: ArgError) -> SpecError:
    span = comp.arg_span(err.arg) if err.arg else comp.span
    return SpecError(f"{comp.family} '{comp.kind}': {err.message}", span, err.hint)
