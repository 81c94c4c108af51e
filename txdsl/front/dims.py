"""The dimensions each component is built for, from the IR alone (no torch).

One source for validation, estimates and construction, so what is checked
and counted is exactly what is built:

- ``width``: the embedding width ``E`` inside the embedding, ``d_model`` elsewhere;
- ``context``: the model's ``context`` parameter, else the tokens the
  embedding position covers (``max_len`` less a padding offset);
- ``heads``/``head_dim``: inside a stack, those of its layer-0 attention
  (RoPE rotates ``head_dim``, ALiBi has a slope per head); ``None`` outside.
- ``residual``: inside a layer, its residual scheme (Luna's packed context is
  normalised as the layer is); ``None`` outside.
"""

from __future__ import annotations

from typing import Iterator

from pydantic import ValidationError

from ..errors import SpecError
from ..ir import Component, LayerIR, ModelIR, StackIR
from ..registry import Registry
from ..sdk import ComponentArgs, Dims


def component_args(registry: Registry, comp: Component) -> ComponentArgs:
    """``comp.args`` validated into its kind's argument model; errors at the argument's span."""
    if not registry.has(comp.family, comp.kind):
        raise SpecError(f"unknown {comp.family} '{comp.kind}'", comp.span)
    model = registry.args(comp.family, comp.kind)
    try:
        return model.model_validate(comp.args)
    except ValidationError as exc:
        errs = exc.errors()
        args = [str(e["loc"][0]) if e.get("loc") else None for e in errs]
        what = "; ".join((f"argument '{a}': " if a else "") + e["msg"] for a, e in zip(args, errs))
        span = comp.arg_span(args[0]) if args[0] else comp.span
        raise SpecError(f"{comp.family} '{comp.kind}' {what}", span) from None


def base_dims(ir: ModelIR, registry: Registry) -> Dims:
    """The model-wide dimensions (``width`` = ``d_model``).

    ``context``: the model's ``context`` parameter (the spec's own word wins,
    as in :func:`txdsl.front.validate.dims_for`); else the tokens the embedding
    position covers: its ``max_len`` less the rows an offset reserves
    (RoBERTa's positions start at ``padding_idx + 1``: 514 rows hold 512 tokens).
    """
    context = ir.params.get("context")
    if not isinstance(context, int) or isinstance(context, bool):
        context = None
        pos = ir.embedding.position
        if pos is not None and isinstance(pos.args.get("max_len"), int):
            context = pos.args["max_len"]
            offset = getattr(component_args(registry, pos), "offset", None)
            if callable(offset):
                context -= offset()
    return Dims(d_model=ir.d_model, width=ir.d_model, vocab=ir.embedding.tokens,
                embed_size=ir.embedding.size,
                context=context if context is not None and context > 0 else None)


def stack_dims(stack: StackIR, base: Dims, registry: Registry) -> Dims:
    """Dims for a stack's components: ``heads``/``head_dim`` of layer 0's attention
    (what a stack-level position needs: RoPE rotates head_dim, ALiBi has a slope per head)."""
    attn = component_args(registry, stack.layers[0].attention)
    heads = getattr(attn, "heads", None)
    head_size = getattr(attn, "head_size", None)
    head_dim = head_size(base) if callable(head_size) else None
    return base.model_copy(update={"heads": heads, "head_dim": head_dim,
                                   "layers": len(stack.layers)})


def layer_dims(layer: LayerIR, dims: Dims) -> Dims:
    """A layer's components' dims: its stack's, with the layer's residual scheme."""
    return dims.model_copy(update={"residual": layer.residual})


def layer_positions(stack: StackIR) -> list[Component]:
    """The distinct schemes layers chose instead of the stack's (``layer[...] { position =
    scheme(...) }``), in order of first use: one module each, computed once per forward."""
    out: list[Component] = []
    for layer in stack.layers:
        pos = getattr(layer, "position", None)
        if pos is not None and pos != stack.position and pos not in out:
            out.append(pos)
    return out


def iter_components(ir: ModelIR, registry: Registry) -> Iterator[tuple[str, Component, Dims]]:
    """Every component instance construction builds, with where it goes and its dims.

    Layers that share another layer's parameters are skipped (built once).
    A layer's norm appears once per instance: ``<stack>.layers.<i>.<sublayer>_norm``
    (and ``..._norm_out`` with sandwich norms).
    """
    base = base_dims(ir, registry)
    emb = ir.embedding
    emb_dims = base.model_copy(update={"width": emb.size})
    for name in ("patches", "position", "norm"):
        comp = getattr(emb, name)
        if comp is not None:
            yield f"embedding.{name}", comp, emb_dims
    for stack in ir.stacks:
        dims = stack_dims(stack, base, registry)
        if stack.position is not None:
            yield f"{stack.role}.position", stack.position, dims
        for k, pos in enumerate(layer_positions(stack)):
            yield f"{stack.role}.layer_positions.{k}", pos, dims
        for layer in stack.layers:
            if layer.shares is not None:
                continue
            prefix, ldims = f"{stack.role}.layers.{layer.index}", layer_dims(layer, dims)
            for sub in ("attention", "cross_attention", "ffn"):
                comp = getattr(layer, sub)
                if comp is None:
                    continue
                yield f"{prefix}.{sub}", comp, ldims
                if layer.norm is not None:
                    yield f"{prefix}.{sub}_norm", layer.norm, ldims
                    if layer.residual == "sandwich":
                        yield f"{prefix}.{sub}_norm_out", layer.norm, ldims
        if stack.final_norm is not None:
            yield f"{stack.role}.final_norm", stack.final_norm, dims
    for head in ir.heads:
        yield f"heads.{head.name}", head.head, base
