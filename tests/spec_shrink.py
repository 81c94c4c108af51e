"""Shrinking the zoo's models for tests: a tiny ``extends`` child written as spec text.

Imported by name (``spec_shrink``) from tests in ``tests/``.

:func:`shrink_text` looks at a model's evaluated parameters (``ir.params``) and
writes ``import "<file>"`` plus ``model <name>_tiny extends <name> { ... }``
overriding only the size parameters the model defines; the parent's
expressions then follow (RoBERTa's ``max_len: context + 2``, ViT's
``(image // patch) ** 2 + 1``, ``4 * d_model``). :func:`structure` is what the
shrink must keep: every component's family, kind and non-size arguments, the
layer wiring, sharing and heads, but not sizes or the number of layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# parameter -> its value in the shrunk model (applied only where the model defines it)
TINY = {
    "layers": 2,
    "vocab": 211,
    "context": 32,
    "d_model": 64,
    "heads": 4,
    "kv_heads": 2,  # still grouped-query attention: fewer key/value heads than heads
    "d_ff": 128,
    "embed": 32,  # ALBERT's factorized embedding stays narrower than d_model
    "image": 32,
    "patch": 8,
}


def overrides(params: dict[str, Any]) -> dict[str, int]:
    """The :data:`TINY` values for the parameters ``params`` defines."""
    return {k: v for k, v in TINY.items() if k in params}


def shrink_text(spec: Path, name: str, params: dict[str, Any], *,
                tiny_name: str | None = None) -> str:
    """Spec text (parsed with ``base_dir=spec.parent``) of a tiny child of model ``name``."""
    body = "; ".join(f"{k} = {v}" for k, v in overrides(params).items())
    child = tiny_name or f"{name}_tiny"
    return f'import "{spec.name}"\n\nmodel {child} extends {name} {{ {body} }}\n'


# ------------------------------------------------------------------ structure


def _is_size(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def component(comp: Any) -> Any:
    """``(family, kind, non-size args)``; attention also says whether it groups key/value heads."""
    if comp is None:
        return None
    args = tuple(sorted((k, v) for k, v in comp.args.items() if not _is_size(v)))
    extra: tuple = ()
    if comp.family == "attention":
        heads, kv = comp.args.get("heads"), comp.args.get("kv_heads")
        extra = (("grouped", kv is not None and kv != heads),)
    return (comp.family, comp.kind, args + extra)


def _layer(layer: Any) -> tuple:
    return (layer.residual, component(layer.norm), component(layer.attention),
            component(layer.cross_attention), component(layer.ffn), layer.dropout,
            layer.shares is not None)


def _stack(stack: Any) -> tuple | None:
    if stack is None:
        return None
    # Every bundled spec is uniform over its layers (no layer[...] overrides), so
    # the set of distinct layers is independent of how many there are.
    return (stack.role, stack.causal, component(stack.position), component(stack.final_norm),
            frozenset(_layer(layer) for layer in stack.layers))


def structure(ir: Any) -> dict[str, Any]:
    """What shrinking must not change."""
    emb = ir.embedding
    return {
        "embedding": (emb.tokens is not None, component(emb.patches), component(emb.position),
                      emb.token_types, component(emb.norm), emb.dropout, emb.scale,
                      emb.cls_token, emb.size != ir.d_model),
        "encoder": _stack(ir.encoder),
        "decoder": _stack(ir.decoder),
        "heads": tuple((h.name, component(h.head)) for h in ir.heads),
        "params": tuple(sorted(ir.params)),
    }
