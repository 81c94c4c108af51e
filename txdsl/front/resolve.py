"""From spec text to a resolved, validated :class:`~txdsl.ir.ModelIR`.

``load`` (imports) -> ``merge`` (extends) -> evaluate parameters -> build
every layer explicitly (per-layer overrides, sharing) -> ``validate``.
This module holds the public entry points :func:`parse`, :func:`parse_file`
and :func:`parse_all`.
"""

from __future__ import annotations

from pathlib import Path

from . import syntax as s
from ..errors import ErrorSink, SpecError, did_you_mean
from .expr import ComponentValue, Scope, Value, evaluate
from ..ir import Component, EmbeddingIR, HeadIR, LayerIR, ModelIR, StackIR
from .halting import halting as halting_of
from .patterns import select_layers, sharing
from .loader import FileScope, Loader
from .merge import EMBEDDING_FIELDS, STACK_FIELDS, BlockConfig, ModelConfig, Slot, linearize, merge
from ..registry import Registry
from .source import source_from_text
from .validate import validate
from .values import as_bool, as_component_value, as_float, as_int, as_symbol, to_component

RESIDUALS = ("pre", "post", "sandwich", "deepnorm")
MEMORY_FORMS = ("prepend", "bottleneck", "dedicated")  # Burtsev et al. 2020
# Attention kinds that apply every predicate of the mask (reference, SDPA with a dense
# mask, FlexAttention); another kind opts in with ``takes_mask_patterns = True``.
MASK_PATTERN_KINDS = ("full", "relative", "persistent")
FIELD_HOME = {**{f: "the encoder/decoder block" for f in STACK_FIELDS},
              **{f: "the embedding block" for f in EMBEDDING_FIELDS}}


def parse(text: str, base_dir: str | Path | None = None, *, model: str | None = None,
          path: str = "<string>", registry: Registry | None = None) -> ModelIR:
    """Resolve and validate spec ``text``; imports resolve against ``base_dir`` (default: cwd).

    With several models in the text, the last one is returned unless ``model`` names one.
    """
    scope = Loader().load_source(source_from_text(text, path), Path(base_dir or "."))
    return _pick(scope, model, registry)


def parse_file(path: str | Path, *, model: str | None = None,
               registry: Registry | None = None) -> ModelIR:
    """Resolve and validate the spec file at ``path`` (its last model, or ``model``)."""
    scope = Loader().load_file(Path(path))
    return _pick(scope, model, registry)


def parse_all(path: str | Path, *, registry: Registry | None = None) -> list[ModelIR]:
    """Every model defined in the file at ``path``, each resolved and validated."""
    scope = Loader().load_file(Path(path))
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    sink = ErrorSink()
    out = []
    for decl in scope.local:
        try:
            out.append(resolve(decl, scope, registry))
        except SpecError as err:
            sink.add(err)
    sink.check()
    return out


def _pick(scope: FileScope, name: str | None, registry: Registry | None) -> ModelIR:
    if registry is None:  # a public entry point: the installed plugins
        from ..plugins import get_registry

        registry = get_registry()
    local = scope.local
    if name is None:
        if not local:
            raise SpecError("no model defined", None, "a spec defines a model: model NAME { ... }",
                            path=scope.path)
        return resolve(local[-1], scope, registry)
    found = scope.visible.get(name)
    if found is None:
        raise SpecError(f"no model named '{name}'", None,
                        did_you_mean(name, scope.visible, "models"), path=scope.path)
    return resolve(found[0], scope, registry)


def resolve(decl: s.ModelDecl, scope: FileScope, registry: Registry) -> ModelIR:
    """Merge, evaluate and validate one model, reporting every independent error.

    A stage's errors don't stop the next one: a statement merge rejects is left
    out (and what is missing because of it is not reported again), a component
    in error is left out of the IR, and validation still checks the rest. Only
    when a value everything depends on failed (``d_model``, the embedding's
    input, a layer count) is validation skipped, so no error is a consequence
    of another.
    """
    sink = ErrorSink()
    config = merge(linearize(decl, scope), sink)
    merged_cleanly = not sink
    resolver = Resolver(config, registry, sink, partial=not merged_cleanly)
    ir = resolver.model()
    if ir is not None and not resolver.degraded:
        validate(ir, registry, sink, structure=merged_cleanly and not sink)
    sink.check(in_file_order=True)
    if ir is None:  # pragma: no cover  (an IR that can't be built comes with errors)
        raise RuntimeError(f"model '{decl.name}' could not be resolved, and no error says why")
    return ir


class Resolver:
    """Evaluates a merged config into IR, collecting independent errors in ``sink``.

    ``partial``: merge left statements out (already reported), so what is
    missing is not reported again. ``degraded`` (set while resolving): a value
    the whole model depends on failed, so the IR is not worth validating.
    """

    def __init__(self, config: ModelConfig, registry: Registry, sink: ErrorSink | None = None,
                 *, partial: bool = False):
        self.config = config
        self.registry = registry
        self.scope = Scope(config.params)
        self.sink = ErrorSink() if sink is None else sink
        self.partial = partial
        self.degraded = False

    def _missing(self, error: SpecError, *, degrade: bool = True) -> None:
        """Report something the spec lacks, unless merge dropped a statement (it may be that one)."""
        self.degraded = self.degraded or degrade
        if not self.partial:
            self.sink.add(error)

    def model(self) -> ModelIR | None:
        """The model's IR, built as far as it can be despite errors (``None`` if it can't);
        errors are in ``sink``, for the caller to raise."""
        params = {}
        for name, assign in self.config.params.items():
            v = self._try(lambda: self.scope.lookup(name, assign.span))
            if isinstance(v, (int, float, bool, str)):
                params[name] = v
        d_model = self._d_model()
        blocks = self.config.blocks
        embedding = self._embedding(blocks.get("embedding"), d_model)
        encoder = self._try(lambda: self._stack(blocks["encoder"]), degrade=True) \
            if "encoder" in blocks else None
        decoder = self._try(lambda: self._stack(blocks["decoder"]), degrade=True) \
            if "decoder" in blocks else None
        if "encoder" not in blocks and "decoder" not in blocks:
            self._missing(SpecError(f"model '{self.config.name}' has no encoder or decoder",
                                    self.config.span, "add decoder(N) { ... } or encoder(N) { ... }"))
        heads = self._heads(blocks.get("heads"))
        self._misplaced_fields()
        try:
            return ModelIR(name=self.config.name, d_model=d_model, params=params,
                           embedding=embedding, encoder=encoder, decoder=decoder, heads=heads,
                           span=self.config.span)
        except ValueError:  # pydantic's ValidationError: parts in error are missing
            if not self.sink:
                raise
            return None

    def _misplaced_fields(self) -> None:
        """A model-level ``final_norm = layernorm`` is a parameter nobody uses: almost
        certainly a field written outside its block, so say where it belongs."""
        for name, assign in self.config.params.items():
            if name in self.scope.referenced or name not in FIELD_HOME:
                continue
            if isinstance(self._try(lambda: self.scope.lookup(name, assign.span)), ComponentValue):
                self.sink.add(SpecError(
                    f"'{name}' at model level is a parameter that nothing uses", assign.span,
                    f"{name} is a field of {FIELD_HOME[name]}: move it inside that block"))

    # ------------------------------------------------------------- helpers

    def _try(self, fn, *, degrade: bool = False):
        """``fn()``, or ``None`` with its error collected; ``degrade``: the value matters
        to the whole model, so validation is skipped without it."""
        try:
            return fn()
        except SpecError as err:
            self.sink.add(err)
            self.degraded = self.degraded or degrade
            return None

    def _value(self, slot: Slot) -> Value:
        v = evaluate(slot.value, self.scope)
        for edit in slot.edits:
            base = as_component_value(v, slot.span, ".".join(edit.target[:-1]) or "this field")
            if base is None:
                raise SpecError(f"cannot set '{edit.target[-1]}': the component is none", edit.span)
            v = base.with_arg(edit.target[-1], evaluate(edit.value, self.scope), edit.value.span)
        return v

    def _component(self, slot: Slot | None, family: str, what: str) -> Component | None:
        if slot is None:
            return None
        cv = as_component_value(self._value(slot), slot.value.span, what)
        return None if cv is None else to_component(cv, family, self.registry, self.scope)

    def _d_model(self) -> int:
        assign = self.config.params.get("d_model")
        if assign is None:
            self._missing(SpecError(f"model '{self.config.name}' does not set d_model",
                                    self.config.span, "every model needs its width: d_model = 512"))
            return 1
        v = self._try(lambda: self.scope.lookup("d_model", assign.span), degrade=True)
        if v is None:
            return 1
        return self._try(lambda: as_int(v, assign.value.span, "d_model", scope=self.scope),
                         degrade=True) or 1

    # ----------------------------------------------------------- embedding

    def _embedding(self, block: BlockConfig | None, d_model: int) -> EmbeddingIR:
        if block is None:
            self._missing(SpecError(f"model '{self.config.name}' has no embedding block",
                                    self.config.span, "add embedding { tokens = vocab }"))
            return EmbeddingIR(tokens=1, size=d_model)
        f = block.fields
        get = lambda name, conv: self._try(lambda: conv(self._value(f[name]), f[name].value.span),
                                           degrade=name in ("tokens", "size")) \
            if name in f else None  # noqa: E731
        tokens = get("tokens", lambda v, sp: as_int(v, sp, "tokens (the vocabulary size)", scope=self.scope))
        patches = self._try(lambda: self._component(f.get("patches"), "patches", "patches"),
                            degrade=True)
        features = get("features", lambda v, sp: as_int(v, sp, "features (continuous input "
                                                           "width)", scope=self.scope))
        if (tokens is None and patches is None and features is None and "tokens" not in f
                and "patches" not in f and "features" not in f):
            self._missing(SpecError("the embedding needs an input: tokens = VOCAB, or patches = "
                                    "conv(size: 16, image: 224)", block.span))
        size = get("size", lambda v, sp: as_int(v, sp, "size", scope=self.scope)) or d_model
        return EmbeddingIR(
            tokens=tokens, patches=patches, features=features, size=size,
            position=self._try(lambda: self._component(f.get("position"), "position", "position")),
            token_types=get("token_types", lambda v, sp: as_int(v, sp, "token_types", 0, self.scope)) or 0,
            norm=self._try(lambda: self._component(f.get("norm"), "norm", "norm")),
            dropout=get("dropout", self._dropout) or 0.0,
            scale=bool(get("scale", lambda v, sp: as_bool(v, sp, "scale"))),
            cls_token=bool(get("cls_token", lambda v, sp: as_bool(v, sp, "cls_token"))),
            span=block.span)

    def _dropout(self, v: Value, span) -> float:
        p = as_float(v, span, "dropout", self.scope)
        if not 0.0 <= p < 1.0:
            raise SpecError(f"dropout must be in [0, 1), got {p}", span)
        return p

    # -------------------------------------------------------------- stacks

    def _stack(self, block: BlockConfig) -> StackIR:
        count_expr = block.count
        n = as_int(evaluate(count_expr, self.scope), count_expr.span,
                   f"the number of {block.name} layers", scope=self.scope)
        if n > 10_000:
            raise SpecError(f"{n} layers is more than txdsl supports (10000)", count_expr.span)
        f = block.fields
        selections = []
        for lb in block.layers:
            idx = self._try(lambda: select_layers(lb, n, block.name, self.scope))
            selections.append((lb, idx or set()))
        layers = []
        for i in range(n):
            fields = dict(f)
            for lb, idx in selections:
                if i in idx:
                    for stmt in lb.body:
                        name = stmt.target[0]
                        if len(stmt.target) == 1:
                            fields[name] = Slot(stmt.value, stmt.span)
                        elif name in fields:
                            fields[name] = fields[name].edited(s.Assign(stmt.target[1:], stmt.value,
                                                                        span=stmt.span))
                        else:
                            self._missing(SpecError(f"cannot set {'.'.join(stmt.target)}: {name} "
                                                    f"is not set for layer {i}", stmt.span),
                                          degrade=False)
            layers.append(self._layer(i, fields, block))
        causal_default = block.name == "decoder"
        causal = self._try(lambda: as_bool(self._value(f["causal"]), f["causal"].value.span,
                                           "causal")) if "causal" in f else causal_default
        share = f.get("share")
        if share is not None:
            layers = self._try(lambda: sharing(self._value(share), share, layers)) or layers
        if "memory_form" in f:
            self._try(lambda: self._memory_bottleneck(f, layers, causal))
        return StackIR(role=block.name, causal=causal if causal is not None else causal_default,
                       position=self._try(lambda: self._component(f.get("position"), "position",
                                                                  "position")),
                       layers=tuple(layers),
                       final_norm=self._try(lambda: self._component(f.get("final_norm"), "norm",
                                                                    "final_norm")),
                       halting=self._try(lambda: halting_of(self._value(f["halting"]),
                                                            f["halting"], self.scope))
                       if "halting" in f else None,
                       memory_tokens=self._try(lambda: as_int(
                           self._value(f["memory_tokens"]), f["memory_tokens"].value.span,
                           "memory_tokens", 0, self.scope)) or 0 if "memory_tokens" in f else 0,
                       memory_form=self._try(lambda: as_symbol(
                           self._value(f["memory_form"]), f["memory_form"].value.span,
                           "memory_form", MEMORY_FORMS)) or "prepend"
                       if "memory_form" in f else "prepend",
                       span=block.span)

    def _layer(self, i: int, f: dict[str, Slot], block: BlockConfig) -> LayerIR:
        def comp(name: str, family: str) -> Component | None:
            return self._try(lambda: self._component(f.get(name), family, name))

        residual = "pre"
        if "residual" in f:
            residual = self._try(lambda: as_symbol(self._value(f["residual"]),
                                                   f["residual"].value.span, "residual",
                                                   RESIDUALS)) or "pre"
        attention = comp("attention", "attention")
        if "attention" not in f:
            self._missing(SpecError(f"{block.name} layer {i} has no attention", block.span,
                                    "set attention = full(heads: ...) in the stack block"),
                          degrade=False)
        if "ffn" not in f:
            self._missing(SpecError(f"{block.name} layer {i} has no ffn", block.span,
                                    "set ffn = mlp(hidden: ...), or ffn = none for an "
                                    "attention-only layer"), degrade=False)
        norm_slot = f.get("norm")
        norm = comp("norm", "norm") if norm_slot is not None else None
        dropout = 0.0
        if "dropout" in f:
            dropout = self._try(lambda: self._dropout(self._value(f["dropout"]),
                                                      f["dropout"].value.span)) or 0.0
        if attention is None:  # already reported; keep going to find other errors
            attention = Component(family="attention", kind="?", args={})
        return LayerIR(index=i, residual=residual, norm=norm, attention=attention,
                       cross_attention=comp("cross_attention", "attention"),
                       ffn=comp("ffn", "ffn"), dropout=dropout,
                       no_position=bool(self._try(lambda: self._no_position(f, block))),
                       position=self._try(lambda: self._layer_position(f, block)),
                       span=block.span)

    def _memory_bottleneck(self, f: dict[str, Slot], layers: list[LayerIR], causal) -> None:
        """``memory_form = bottleneck`` is a mask pattern: it needs a bidirectional stack
        and attention kinds that apply the whole mask (``MASK_PATTERN_KINDS``)."""
        slot = f["memory_form"]
        if as_symbol(self._value(slot), slot.value.span, "memory_form",
                     MEMORY_FORMS) != "bottleneck":
            return
        if causal:
            raise SpecError("memory_form = bottleneck needs a bidirectional stack: under a "
                            "causal mask the memory, placed first, sees none of the sequence",
                            slot.value.span, "set causal = false, or memory_form = prepend")
        for layer in layers:
            kind = layer.attention.kind
            takes = getattr(self.registry.args("attention", kind), "takes_mask_patterns", None) \
                if self.registry.has("attention", kind) else True
            if kind not in MASK_PATTERN_KINDS and not takes:
                raise SpecError(f"memory_form = bottleneck is a mask, and attention '{kind}' "
                                f"(layer {layer.index}) can't take a custom mask",
                                slot.value.span, "use full or relative attention, or "
                                "memory_form = prepend")

    def _no_position(self, f: dict[str, Slot], block: BlockConfig) -> bool:
        """Whether a ``layer[...]`` block set ``position = none`` for this layer."""
        slot = f.get("position")
        if slot is None or slot is block.fields.get("position") or slot.edits:
            return False
        return as_component_value(self._value(slot), slot.value.span, "position") is None

    def _layer_position(self, f: dict[str, Slot], block: BlockConfig) -> Component | None:
        """The scheme a ``layer[...]`` block gave this layer instead of the stack's
        (``position = alibi()``, or an edit ``position.theta = ...`` of the stack's);
        ``None``: the stack's (or none). Where it may act is checked by validation."""
        slot = f.get("position")
        if slot is None or slot is block.fields.get("position"):
            return None
        if not slot.edits and as_component_value(self._value(slot), slot.value.span,
                                                 "position") is None:
            return None
        return self._component(slot, "position", "position")

    # --------------------------------------------------------------- heads

    def _heads(self, block: BlockConfig | None) -> tuple[HeadIR, ...]:
        if block is None:
            return ()
        out = []
        for name, slot in block.fields.items():
            comp = self._try(lambda: self._component(slot, "head", f"head '{name}'"))
            if comp is not None:
                out.append(HeadIR(name=name, head=comp))
        return tuple(out)
