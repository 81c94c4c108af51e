"""Applying ``extends``: a model's statements, on top of its parents', in order.

The result, a :class:`ModelConfig`, is still unevaluated syntax: parameters
stay expressions, so a child that sets ``d_model = 64`` changes every
expression of its parents that uses ``d_model``. Override rules:

- ``name = value`` replaces the parameter or field ``name``;
- ``field.arg = value`` changes one argument of the component in ``field``
  (``attention.window = 64``), keeping the others;
- ``block { ... }`` merges into the parent's block: only the fields named change;
  ``decoder(6) { }`` also changes the layer count;
- ``layer[...] { ... }`` blocks add to the parent's, and apply after them;
- ``head = X`` replaces all heads; ``heads { name = X }`` adds or replaces one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import syntax as s
from ..errors import ErrorSink, Span, SpecError, did_you_mean
from .loader import FileScope

STACKS = ("encoder", "decoder")
BLOCKS = ("embedding", "heads") + STACKS
EMBEDDING_FIELDS = ("tokens", "patches", "size", "position", "token_types", "norm", "dropout",
                    "scale", "cls_token", "features")
LAYER_FIELDS = ("residual", "norm", "attention", "cross_attention", "ffn", "dropout")
STACK_FIELDS = LAYER_FIELDS + ("position", "final_norm", "causal", "share", "halting",
                               "memory_tokens", "memory_form")
# Set per layer too, with one value: ``position = none`` drops the stack's position there.
PER_LAYER_ONLY_NONE = ("position",)
# Words people bring from other libraries, and what the field is called here.
SYNONYMS = {"vocab": "tokens", "vocab_size": "tokens", "num_tokens": "tokens",
            "mlp": "ffn", "feed_forward": "ffn", "feedforward": "ffn", "ff": "ffn",
            "self_attention": "attention", "attn": "attention", "self_attn": "attention",
            "cross_attn": "cross_attention", "layernorm": "norm", "layer_norm": "norm",
            "ln": "norm", "ln_f": "final_norm", "norm_f": "final_norm", "final_layernorm": "final_norm",
            "pos": "position", "positions": "position", "positional": "position",
            "pos_emb": "position", "type_vocab_size": "token_types", "segments": "token_types",
            "embedding_size": "size", "embed_size": "size", "tie": "head = lm(tied: true)",
            "layers": "the count in decoder(N) { ... }", "depth": "the count in decoder(N) { ... }",
            "num_layers": "the count in decoder(N) { ... }", "norm_first": "residual = pre"}
RESERVED = ("embedding", "encoder", "decoder", "head", "layer", "model")


@dataclass
class Slot:
    """A field's value: the expression assigned, then dotted edits of its arguments."""

    value: s.Expr
    span: Span
    edits: tuple[s.Assign, ...] = ()

    def edited(self, assign: s.Assign) -> "Slot":
        return Slot(self.value, self.span, self.edits + (assign,))


@dataclass
class BlockConfig:
    name: str
    span: Span
    count: s.Expr | None = None
    fields: dict[str, Slot] = field(default_factory=dict)
    layers: list[s.LayerBlock] = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str
    span: Span
    chain: list[str]
    params: dict[str, s.Assign] = field(default_factory=dict)
    blocks: dict[str, BlockConfig] = field(default_factory=dict)


def linearize(decl: s.ModelDecl, scope: FileScope) -> list[s.ModelDecl]:
    """``decl`` and its ancestors, the root ancestor first."""
    chain = [decl]
    seen = {decl.name}
    while chain[-1].extends is not None:
        child = chain[-1]
        parent_name = child.extends
        found = scope.visible.get(parent_name)
        if found is None:
            raise SpecError(f"model '{child.name}' extends unknown model '{parent_name}'",
                            child.extends_span, did_you_mean(parent_name, scope.visible, "known models"))
        parent, scope = found
        if parent.name in seen:
            names = " extends ".join([d.name for d in chain] + [parent.name])
            raise SpecError(f"cyclic extends: {names}", child.extends_span)
        seen.add(parent.name)
        chain.append(parent)
    return chain[::-1]


def merge(chain: list[s.ModelDecl], sink: ErrorSink | None = None) -> ModelConfig:
    """The merged config of ``chain`` (root first).

    A statement in error is reported and left out. With a ``sink`` the errors
    go there and the (partial) config is still returned, so later stages can
    report their own independent errors; without one they are raised here.
    """
    model = chain[-1]
    config = ModelConfig(name=model.name, span=model.span, chain=[d.name for d in chain])
    own = ErrorSink() if sink is None else sink
    for decl in chain:
        for stmt in decl.body:
            try:
                _model_stmt(config, stmt)
            except SpecError as err:
                own.add(err)
    if sink is None:
        own.check()
    return config


def _model_stmt(config: ModelConfig, stmt: s.Stmt) -> None:
    if isinstance(stmt, s.LayerBlock):
        raise SpecError("layer[...] blocks go inside an encoder or decoder block", stmt.span)
    if isinstance(stmt, s.Block):
        if stmt.name not in BLOCKS:
            raise SpecError(f"unknown block '{stmt.name}'", stmt.span,
                            did_you_mean(stmt.name, BLOCKS, "blocks"))
        _merge_block(config, stmt)
        return
    name, rest = stmt.target[0], stmt.target[1:]
    if name == "head":
        heads = BlockConfig("heads", stmt.span)
        config.blocks["heads"] = heads
        head_name = _head_name(stmt.value)
        if rest:
            raise SpecError("set a head's argument with heads.NAME.ARG = value", stmt.span)
        heads.fields[head_name] = Slot(stmt.value, stmt.span)
    elif name in BLOCKS and not (name == "heads" and not rest):  # `heads = 12` is a parameter
        if not rest:
            raise SpecError(f"'{name}' is a block: write {name} {{ ... }}", stmt.span)
        block = config.blocks.get(name)
        if block is None:
            raise SpecError(f"cannot set {'.'.join(stmt.target)}: this model has no {name} block",
                            stmt.span)
        _block_assign(block, s.Assign(rest, stmt.value, span=stmt.span), _fields_of(name))
    elif name in RESERVED:
        raise SpecError(f"'{name}' is a reserved word and can't be a parameter", stmt.span)
    elif rest:
        raise SpecError(f"'{name}' is a parameter, not a block or component, so "
                        f"'{'.'.join(stmt.target)}' means nothing", stmt.span,
                        "a dotted name sets one argument of a component, like "
                        "decoder.attention.window = 64")
    else:
        config.params.pop(name, None)
        config.params[name] = stmt


def _head_name(value: s.Expr) -> str:
    if isinstance(value, s.Call):
        return value.name
    if isinstance(value, s.Name):
        return value.id
    return "head"


def _fields_of(block: str) -> tuple[str, ...] | None:
    return {"embedding": EMBEDDING_FIELDS, "heads": None}.get(block, STACK_FIELDS)


def _merge_block(config: ModelConfig, stmt: s.Block) -> None:
    block = config.blocks.get(stmt.name)
    if stmt.count is not None and stmt.name not in STACKS:
        raise SpecError(f"'{stmt.name}' takes no count; only encoder(N) and decoder(N) do",
                        stmt.count.span)
    if block is None:
        if stmt.name in STACKS and stmt.count is None:
            raise SpecError(f"{stmt.name} needs a layer count, like {stmt.name}(12) {{ ... }}",
                            stmt.span)
        block = config.blocks[stmt.name] = BlockConfig(stmt.name, stmt.span)
    if stmt.count is not None:
        block.count = stmt.count
    allowed = _fields_of(stmt.name)
    sink = ErrorSink()
    for inner in stmt.body:
        try:
            if isinstance(inner, s.Block):
                raise SpecError(f"blocks can't nest: '{inner.name}' inside '{stmt.name}'",
                                inner.span)
            if isinstance(inner, s.LayerBlock):
                if stmt.name not in STACKS:
                    raise SpecError(f"layer[...] blocks go inside an encoder or decoder block, "
                                    f"not in {stmt.name}", inner.span)
                block.layers.append(_check_layer_block(inner, sink))
            else:
                _block_assign(block, inner, allowed)
        except SpecError as err:
            sink.add(err)
    sink.check()


def _block_assign(block: BlockConfig, stmt: s.Assign, allowed: tuple[str, ...] | None) -> None:
    name, rest = stmt.target[0], stmt.target[1:]
    if allowed is not None and name not in allowed:
        raise SpecError(f"unknown field '{name}' in {block.name}", stmt.span,
                        field_hint(name, allowed))
    if not rest:
        block.fields[name] = Slot(stmt.value, stmt.span)
        return
    if len(rest) > 1:
        raise SpecError(f"'{'.'.join(stmt.target)}' is nested too deeply: write FIELD.ARG = value",
                        stmt.span)
    slot = block.fields.get(name)
    if slot is None:
        raise SpecError(f"cannot set {name}.{rest[0]}: {name} is not set in {block.name}",
                        stmt.span, f"set the whole component first, like {name} = kind(...)")
    block.fields[name] = slot.edited(s.Assign(rest, stmt.value, span=stmt.span))


def field_hint(name: str, allowed: tuple[str, ...]) -> str | None:
    """"did you mean", or the txdsl word for another library's (``vocab`` -> ``tokens``)."""
    close = did_you_mean(name, allowed, "fields")
    if close and close.startswith("did you mean"):
        return close
    if name.lower() in SYNONYMS:
        return f"txdsl calls this {SYNONYMS[name.lower()]} ({close})"
    return close


def _check_layer_block(block: s.LayerBlock, sink: ErrorSink) -> s.LayerBlock:
    """``block`` without its statements in error, which go to ``sink``."""
    kept = []
    for stmt in block.body:
        if isinstance(stmt, (s.Block, s.LayerBlock)):
            sink.add(SpecError("blocks can't nest inside layer[...]", stmt.span))
        elif stmt.target[0] not in LAYER_FIELDS + PER_LAYER_ONLY_NONE:
            name = stmt.target[0]
            if name in STACK_FIELDS:
                sink.add(SpecError(f"'{name}' is set per stack, not per layer", stmt.span,
                                   "move it out of layer[...] into the stack block"))
            else:
                sink.add(SpecError(f"unknown field '{name}' in layer[...]", stmt.span,
                                   field_hint(name, LAYER_FIELDS)))
        elif len(stmt.target) > 2:
            sink.add(SpecError("write FIELD.ARG = value", stmt.span))
        else:
            kept.append(stmt)
    return block if len(kept) == len(block.body) else replace(block, body=tuple(kept))
