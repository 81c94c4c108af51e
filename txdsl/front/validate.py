"""Rules beyond types, checked on the resolved IR; every message quotes the values.

- each component's own ``check(dims)`` (``d_model (770) is not divisible by
  heads (12)``, a tied head needs matching sizes, ...), at the argument's span;
- positions act where they can: additive ones in the embedding, the others in
  a stack whose attention accepts them;
- cross-attention only in the decoder of an encoder-decoder model, and such
  a decoder must attend to its encoder;
- an attention kind is used only where it can serve (``AttentionArgs.check_use``:
  a causal stack, a bidirectional one, cross-attention), or it says why not.
"""

from __future__ import annotations

from ..errors import ErrorSink, SpecError
from ..ir import Component, LayerIR, ModelIR, StackIR
from .dims import base_dims, layer_dims, stack_dims
from ..registry import Registry
from ..sdk.args import ArgError, Dims

ACTS = {"embedding": "is added to the embeddings", "qk": "transforms queries and keys",
        "bias": "adds a bias to the attention scores", "scores": "adds terms to the attention scores"}


def dims_for(ir: ModelIR, registry: Registry, *, width: int | None = None,
             stack: StackIR | None = None) -> Dims:
    """The :class:`Dims` a component of ``ir`` is built with (see :mod:`txdsl.front.dims`)."""
    base = base_dims(ir, registry)
    if stack is not None:
        base = stack_dims(stack, base, registry)
    return base.model_copy(update={"width": width}) if width else base


def validate(ir: ModelIR, registry: Registry, sink: ErrorSink | None = None, *,
             structure: bool = True) -> None:
    """Check ``ir``; errors go to ``sink`` (raised here without one).

    ``ir`` may lack components whose errors were already reported (the
    resolver leaves them out, or puts an attention of kind ``?``): their
    checks are skipped. ``structure=False`` also skips the rules about what a
    model lacks (cross-attention), which such gaps would trip.
    """
    own = ErrorSink() if sink is None else sink
    _validate(ir, registry, own, structure)
    if sink is None:
        own.check()


def _validate(ir: ModelIR, registry: Registry, sink: ErrorSink, structure: bool) -> None:

    def check(comp: Component | None, dims: Dims) -> None:
        if comp is None or not registry.has(comp.family, comp.kind):
            return
        args = registry.args(comp.family, comp.kind).model_validate(comp.args)
        try:
            args.check(dims)
        except ArgError as err:
            span = comp.arg_span(err.arg) if err.arg else comp.span
            sink.add(SpecError(f"{comp.family} '{comp.kind}': {err.message}", span, err.hint))
        except ValueError as err:
            sink.add(SpecError(f"{comp.family} '{comp.kind}': {err}", comp.span))

    emb = ir.embedding
    edims = dims_for(ir, registry, width=emb.size)
    for comp in (emb.patches, emb.norm):
        check(comp, edims)
    if emb.position is not None and _position_in_embedding(emb.position, registry, sink):
        check(emb.position, edims)
    if emb.tokens is not None and emb.patches is not None:
        sink.add(SpecError("the embedding has both tokens and patches; pick one", emb.span))
    if emb.features is not None and (emb.tokens is not None or emb.patches is not None):
        sink.add(SpecError("the embedding has continuous features and tokens or patches; "
                           "pick one input", emb.span))

    for stack in ir.stacks:
        try:
            dims = dims_for(ir, registry, stack=stack)
        except SpecError:  # layer 0's attention is in error, already reported
            continue
        if _position_in_stack(stack, registry, sink):
            check(stack.position, dims)
        for layer in stack.layers:  # layer[...] { position = scheme(...) }
            if layer.position is not None and _position_in_layer(layer, registry, sink):
                check(layer.position, dims)
        check(stack.final_norm, dims)
        for layer in stack.layers:
            if layer.shares is not None:
                continue
            for comp in (layer.norm, layer.attention, layer.cross_attention, layer.ffn):
                check(comp, layer_dims(layer, dims))
            _attention_use(layer.attention, registry, sink, causal=stack.causal, cross=False)
            _attention_use(layer.cross_attention, registry, sink, causal=False, cross=True)
        _residual_scores(stack, registry, sink)
        if structure:
            _cross_attention(ir, stack, sink)
    for head in ir.heads:
        check(head.head, dims_for(ir, registry))


def _attention_use(comp: Component | None, registry: Registry, sink: ErrorSink, *,
                   causal: bool, cross: bool) -> None:
    """An attention kind that can't serve this use (causal, bidirectional, cross) says why."""
    if comp is None or not registry.has("attention", comp.kind):
        return
    try:
        args = registry.args("attention", comp.kind).model_validate(comp.args)
        args.check_use(causal=causal, cross=cross)
    except ArgError as err:
        span = comp.arg_span(err.arg) if err.arg else comp.span
        sink.add(SpecError(f"attention '{comp.kind}' {err.message}", span, err.hint))
    except ValueError:  # its arguments are in error: reported by check()
        return


def _residual_scores(stack: StackIR, registry: Registry, sink: ErrorSink) -> None:
    """An attention adding the previous layer's scores (RealFormer) follows one that forms them."""
    attentions = [(layer.attention if layer.shares is None else
                   stack.layers[layer.shares].attention) for layer in stack.layers]
    for i, (before, comp) in enumerate(zip(attentions, attentions[1:]), start=1):
        if comp is None or not registry.has("attention", comp.kind):
            continue
        if not registry.args("attention", comp.kind).reads_scores:
            continue
        if before is not None and registry.has("attention", before.kind) and (
                registry.args("attention", before.kind).forms_scores):
            heads, prev = comp.args.get("heads"), before.args.get("heads")
            if heads != prev:
                sink.add(SpecError(f"attention '{comp.kind}' in layer {i} adds the previous "
                                   f"layer's scores elementwise, but layer {i - 1} has heads "
                                   f"({prev}) and this one heads ({heads})",
                                   comp.arg_span("heads") or comp.span,
                                   "give both layers the same heads"))
            continue
        what = f"attention '{before.kind}'" if before is not None else "no attention"
        sink.add(SpecError(
            f"attention '{comp.kind}' in layer {i} adds the previous layer's pre-softmax "
            f"scores, but layer {i - 1} has {what}, which never forms them (its kernels, "
            "e.g. SDPA or a linear attention, don't build the score matrix)", comp.span,
            f"use a score-forming attention in layer {i - 1} (e.g. realformer), or start "
            "the residual scores there"))


def _acts(comp: Component, registry: Registry) -> str | None:
    if not registry.has("position", comp.kind):
        return None
    return getattr(registry.args("position", comp.kind), "acts", None)


def _position_in_embedding(pos: Component, registry: Registry, sink: ErrorSink) -> bool:
    """Whether ``pos`` may be added to the embeddings (reports it if not)."""
    acts = _acts(pos, registry)
    if acts is not None and acts != "embedding":
        sink.add(SpecError(f"position '{pos.kind}' {ACTS[acts]}, so it can't be added to the "
                           f"embeddings", pos.span,
                           f"move `position = {pos.kind}(...)` into the encoder/decoder block"))
        return False
    return True


def _position_in_stack(stack: StackIR, registry: Registry, sink: ErrorSink) -> bool:
    """Whether the stack's position can act where it is (reports it if not)."""
    pos = stack.position
    if pos is None:
        return False
    acts = _acts(pos, registry)
    if acts == "embedding":
        sink.add(SpecError(f"position '{pos.kind}' is added to the embeddings, so it belongs in "
                           f"the embedding block", pos.span,
                           f"move `position = {pos.kind}(...)` into embedding {{ ... }}"))
        return False
    layers = [layer for layer in stack.layers if getattr(layer, "position", None) is None]
    return _position_serves(pos, acts, layers, registry, sink)


def _position_in_layer(layer: LayerIR, registry: Registry, sink: ErrorSink) -> bool:
    """Whether a layer's own scheme can act in that layer (reports it if not)."""
    pos = layer.position
    acts = _acts(pos, registry)
    if acts == "embedding":
        sink.add(SpecError(f"position '{pos.kind}' is added to the embeddings (the first layer's "
                           "input), so it can't be chosen per layer", pos.span,
                           f"move `position = {pos.kind}(...)` into embedding {{ ... }}, or "
                           "give this layer a scheme that acts inside attention (rope, alibi, "
                           "t5_bias, ...)"))
        return False
    if pos.args.get("query_stream"):
        sink.add(SpecError(f"position '{pos.kind}' with query_stream opens XLNet's query stream "
                           "for the whole stack, so it can't be chosen per layer",
                           pos.arg_span("query_stream") or pos.span,
                           "set it on the stack: position = relative_xl(query_stream: true)"))
        return False
    return _position_serves(pos, acts, [layer], registry, sink)


def _position_serves(pos: Component, acts: str | None, layers: list[LayerIR],
                     registry: Registry, sink: ErrorSink) -> bool:
    """Whether ``pos`` can act in every layer's attention (reports the first that can't)."""
    for layer in layers:
        attn = layer.attention
        if acts is None or not registry.has("attention", attn.kind) or layer.no_position:
            continue
        accepts = getattr(registry.args("attention", attn.kind), "accepts", frozenset())
        if acts not in accepts:
            can = ", ".join(sorted(accepts))
            sink.add(SpecError(
                f"attention '{attn.kind}' (layer {layer.index}) can't use position "
                f"'{pos.kind}', which {ACTS[acts]}", pos.span,
                f"'{attn.kind}' accepts positions that act on: {can or 'nothing'}"
                + (f" ({note})" if (note := getattr(registry.args("attention", attn.kind),
                                                     "position_note", "")) else "")))
            return False
        if not _kinds_pair(attn.kind, pos.kind, registry):
            sink.add(SpecError(
                f"attention '{attn.kind}' (layer {layer.index}) can't use position "
                f"'{pos.kind}': they don't share the form of their score terms", pos.span,
                _pairing_hint(attn.kind, pos.kind, registry)))
            return False
    return True


def _kinds_pair(attn: str, pos: str, registry: Registry) -> bool:
    """A kind may name the kinds it pairs with (``positions`` on attention args,
    ``attentions`` on position args): Shaw and CoPE terms only ``relative`` takes."""
    takes = getattr(registry.args("attention", attn), "positions", None)
    serves = getattr(registry.args("position", pos), "attentions", None)
    return (takes is None or pos in takes) and (serves is None or attn in serves)


def _pairing_hint(attn: str, pos: str, registry: Registry) -> str:
    serves = getattr(registry.args("position", pos), "attentions", None)
    if serves is not None and attn not in serves:
        return f"'{pos}' pairs with attention: {', '.join(sorted(serves))}"
    takes = getattr(registry.args("attention", attn), "positions", None) or ()
    return f"'{attn}' takes the positions: {', '.join(sorted(takes))}"


def _cross_attention(ir: ModelIR, stack: StackIR, sink: ErrorSink) -> None:
    crossing = [layer for layer in stack.layers if layer.cross_attention is not None]
    if stack.role == "encoder" and crossing:
        sink.add(SpecError("cross_attention is only for decoder layers (the encoder has "
                           "nothing to attend to)", crossing[0].cross_attention.span))
    elif stack.role == "decoder" and crossing and not ir.is_encoder_decoder:
        sink.add(SpecError("cross_attention needs an encoder to attend to, and this model has "
                           "none", crossing[0].cross_attention.span,
                           "add an encoder(N) { ... } block, or remove cross_attention"))
    elif stack.role == "decoder" and ir.is_encoder_decoder and not crossing:
        sink.add(SpecError("the decoder never attends to the encoder", stack.span,
                           "set cross_attention = full(heads: ...) in the decoder block"))
