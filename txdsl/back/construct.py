"""Construction: a model IR and a kernel plan to a :class:`~txdsl.runtime.TxModel`.

Every component is built by the implementation the plan chose for its
``(family, kind)``: ``build(args, BuildContext(dims, target, shared))``, with
``args`` validated back into the kind's registered argument model. The
runtime modules (:mod:`txdsl.runtime`) wire the components together.

Dimensions each component is built for (:func:`iter_components` lists them,
so estimates use exactly what construction uses):

- ``width``: the embedding width ``E`` inside the embedding, ``d_model`` elsewhere;
- ``context``: the model's ``context`` parameter, else the tokens the
  embedding position covers (``max_len`` less a padding offset);
- ``heads``/``head_dim``: inside a stack, those of its layer-0 attention
  (RoPE rotates ``head_dim``, ALiBi has a slope per head); ``None`` outside.
- ``residual``: inside a layer, its residual scheme (Luna's packed context is
  normalised as the layer is); ``None`` outside.

A layer with ``shares = j`` *is* layer ``j``'s module (ALBERT's cross-layer
sharing, Lan et al. 2019): its parameters exist once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import SpecError
from ..ir import Component, LayerIR, ModelIR, StackIR
from ..registry import Registry
from ..runtime import Embedding, Layer, Stack, TxModel
from ..runtime.deepnorm import deepnorm_constants, deepnorm_init
from ..front.dims import (base_dims, component_args as _args, iter_components,  # noqa: F401
                          layer_dims, stack_dims)
from ..sdk import ArgError, BuildContext, Dims, Target
from .backends import BuildError
from .select import KernelPlan, select

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}


# --------------------------------------------------------------- construction


class _Builder:
    def __init__(self, ir: ModelIR, plan: KernelPlan, target: Target, registry: Registry):
        self.ir, self.plan, self.target, self.registry = ir, plan, target, registry
        self.base = base_dims(ir, registry)
        self.shared: dict[str, Any] = {}
        self.built: list[tuple[Component, Any, Dims, nn.Module, str]] = []  # for check_counts

    def component(self, comp: Component, dims: Dims) -> nn.Module:
        args = _args(self.registry, comp)
        try:
            args.check(dims)
        except ArgError as exc:
            raise SpecError(f"{comp.family} '{comp.kind}': {exc.message}",
                            comp.arg_span(exc.arg) if exc.arg else comp.span, exc.hint) from None
        try:
            impl_name = self.plan.impl_for(comp.family, comp.kind)
        except KeyError:
            raise SpecError(f"the kernel plan has no implementation for {comp.family} "
                            f"'{comp.kind}' (a plan made for another model?)", comp.span) from None
        impls = self.registry.implementations(comp.family, comp.kind)
        impl = next((i for i in impls if i.impl == impl_name), None)
        if impl is None:
            raise SpecError(f"{comp.family} '{comp.kind}' has no implementation '{impl_name}' "
                            "installed", comp.span,
                            f"installed: {', '.join(i.impl for i in impls) or 'none'}")
        built = impl.build(args, BuildContext(dims=dims, target=self.target, shared=self.shared))
        module = _plugin_module(impl, built)
        self.built.append((comp, args, dims, module, impl.plugin))
        return module

    def check_counts(self) -> None:
        """Refuse a component whose ``param_count`` differs from what its plugin built:
        ``txdsl show``, the memory guard and every estimate would be wrong."""
        shared = {id(p) for m in self.shared.values() if isinstance(m, nn.Module)
                  for p in m.parameters()}  # a tied head holds the token embedding
        for comp, args, dims, module, plugin in self.built:
            try:
                said = args.param_count(dims)
            except NotImplementedError:
                continue
            has = sum(p.numel() for p in module.parameters() if id(p) not in shared)
            if has != said:
                raise BuildError(
                    f"{comp.family} '{comp.kind}' (plugin '{plugin}'): its param_count says "
                    f"{said:,} parameters but the module it built has {has:,}; estimates "
                    "(txdsl show, the memory guard) would be wrong. This is a bug in the plugin "
                    f"'{plugin}': fix its param_count or its module")

    def acts(self, comp: Component) -> str:
        return getattr(self.registry.args(comp.family, comp.kind), "acts", "embedding")

    def embedding(self) -> Embedding:
        emb, d = self.ir.embedding, self.base.model_copy(update={"width": self.ir.embedding.size})
        tokens = nn.Embedding(emb.tokens, emb.size) if emb.tokens is not None else None
        if tokens is not None:
            self.shared["token_embedding"] = tokens
        position = None
        if emb.position is not None:
            if self.acts(emb.position) != "embedding":
                raise SpecError(f"position '{emb.position.kind}' acts on "
                                f"{self.acts(emb.position)}, not on the embeddings: declare it "
                                "on the stack", emb.position.span)
            position = self.component(emb.position, d)
        return Embedding(
            size=emb.size, d_model=self.ir.d_model, tokens=tokens,
            patches=self.component(emb.patches, d) if emb.patches is not None else None,
            features=nn.Linear(emb.features, emb.size) if emb.features is not None else None,
            cls_token=emb.cls_token, position=position,
            token_types=nn.Embedding(emb.token_types, emb.size) if emb.token_types else None,
            norm=self.component(emb.norm, d) if emb.norm is not None else None,
            dropout=emb.dropout, scale=emb.scale)

    def layer(self, layer: LayerIR, dims: Dims, deepnorm: tuple[float, float] = (1.0, 1.0)
              ) -> Layer:
        dims = layer_dims(layer, dims)

        def build(comp: Component | None) -> nn.Module | None:
            return self.component(comp, dims) if comp is not None else None

        norm = layer.norm
        module = Layer(residual=layer.residual, attention=build(layer.attention),
                       cross_attention=build(layer.cross_attention), ffn=build(layer.ffn),
                       norm=(lambda: build(norm)) if norm is not None else None,
                       dropout=layer.dropout, alpha=deepnorm[0],
                       uses_position=not getattr(layer, "no_position", False))
        if layer.residual == "deepnorm":
            module.deepnorm_beta = deepnorm[1]  # construct() initialises with it
        return module

    def stack(self, stack: StackIR) -> Stack:
        position, acts = None, None
        dims = stack_dims(stack, self.base, self.registry)
        if stack.position is not None:
            acts = self.acts(stack.position)
            if acts == "embedding":
                raise SpecError(f"position '{stack.position.kind}' is added to the embeddings: "
                                "declare it in the embedding, not on the stack",
                                stack.position.span)
            position = self.component(stack.position, dims)
        from ..front.dims import layer_positions
        own = layer_positions(stack)  # layer[...] { position = scheme(...) }: one module each
        for comp in own:
            if self.acts(comp) == "embedding":
                raise SpecError(f"position '{comp.kind}' is added to the embeddings, so it "
                                "can't be chosen per layer", comp.span)
        own_modules = [self.component(comp, dims) for comp in own]
        layer_position = [0 if getattr(layer, "position", None) in (None, stack.position)
                          else 1 + own.index(layer.position) for layer in stack.layers]
        built: dict[int, Layer] = {}
        layers = []
        deepnorm = deepnorm_constants(stack.role, *(len(s.layers) if s is not None else 0
                                                    for s in (self.ir.encoder, self.ir.decoder)))
        for i, layer in enumerate(stack.layers):
            if layer.index != i:
                raise SpecError(f"{stack.role} layer {i} has index {layer.index}", layer.span)
            if layer.shares is not None:
                module = self._shared(stack, layer, built)
            else:
                module = self.layer(layer, dims, deepnorm)
            built[i] = module
            layers.append(module)
        final = self.component(stack.final_norm, dims) if stack.final_norm else None
        halting = getattr(stack, "halting", None)
        if halting is not None:
            from ..runtime.universal import AdaptiveComputationTime
            halting = AdaptiveComputationTime(
                d_model=dims.width, threshold=halting.threshold, ponder=halting.ponder,
                timestep=halting.timestep, bias=halting.bias)
        memory_tokens = None
        if getattr(stack, "memory_tokens", 0):
            from ..runtime.memory_tokens import MemoryTokens
            twins = None
            if stack.memory_form == "dedicated":  # a memory-update layer per (owning) layer
                own: dict[int, Layer] = {}
                twins = []
                for layer in stack.layers:
                    j = layer.shares if layer.shares is not None else layer.index
                    if j not in own:
                        own[j] = self.layer(stack.layers[j], dims, deepnorm)
                    twins.append(own[j])
            memory_tokens = MemoryTokens(size=stack.memory_tokens, d_model=dims.width,
                                         form=stack.memory_form, memory_layers=twins)
        return Stack(role=stack.role, causal=stack.causal, layers=layers, position=position,
                     final_norm=final, halting=halting, memory_tokens=memory_tokens,
                     layer_positions=own_modules, layer_position=layer_position)

    @staticmethod
    def _shared(stack: StackIR, layer: LayerIR, built: dict[int, Layer]) -> Layer:
        j = layer.shares
        if j is None or j >= layer.index:
            raise SpecError(f"{stack.role} layer {layer.index} shares layer {j}, which is not "
                            "an earlier layer", layer.span)
        src = stack.layers[j]
        fields = ("residual", "norm", "attention", "cross_attention", "ffn", "dropout")
        diff = [f for f in fields if getattr(src, f) != getattr(layer, f)]
        if diff:
            raise SpecError(f"{stack.role} layer {layer.index} shares layer {j}'s parameters but "
                            f"differs from it in {', '.join(diff)}", layer.span)
        return built[j]

    def model(self) -> TxModel:
        embedding = self.embedding()
        encoder = self.stack(self.ir.encoder) if self.ir.encoder is not None else None
        decoder = self.stack(self.ir.decoder) if self.ir.decoder is not None else None
        heads = {h.name: self.component(h.head, self.base) for h in self.ir.heads}
        kinds = {h.name: h.head.kind for h in self.ir.heads}
        return TxModel(ir=self.ir, plan=self.plan, embedding=embedding, encoder=encoder,
                       decoder=decoder, heads=heads, head_kinds=kinds, context=self.base.context)


def _plugin_module(impl: Any, built: Any) -> nn.Module:
    """What a plugin's ``build`` returned, refused unless it is an ``nn.Module``."""
    if isinstance(built, nn.Module):
        return built
    what = "None" if built is None else f"{type(built).__name__} {built!r:.60}"
    raise BuildError(f"plugin '{impl.plugin}': {impl.family} '{impl.name}' (implementation "
                     f"'{impl.impl}') build() returned {what}, not a torch.nn.Module "
                     "(a bug in the plugin)")


def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """GPT-2/BERT-style initialisation: Linear and Embedding weights ~ N(0, std),
    Linear biases 0, an embedding's padding row 0; the [CLS] vector ~ N(0, std).
    Other parameters (norms, position tables, plugin-specific ones) keep their own.
    Then every module with an ``own_init()`` method runs it: a component whose
    authors start it differently (Luna's and Linformer's fairseq Xavier projections,
    the Set Transformer's PyTorch-default ones) re-initialises what it owns."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=std)
                if m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
            elif isinstance(m, Embedding) and m.cls_token is not None:
                nn.init.normal_(m.cls_token, std=std)
        for m in model.modules():
            own = getattr(m, "own_init", None)
            if callable(own):
                own()


def construct(ir: ModelIR, plan: KernelPlan | None = None, *, registry: Registry,
              target: Target | None = None, device: str | torch.device | None = None,
              dtype: str | torch.dtype | None = None, force: dict[str, str] | None = None,
              init_std: float | None = 0.02) -> TxModel:
    """Build ``ir`` into a :class:`TxModel` with the implementations of ``plan``.

    ``plan`` ``None``: :func:`txdsl.back.select.select` for ``target`` (with ``force``).
    ``device``/``dtype`` default to the target's; ``device="meta"`` allocates
    nothing (for estimates). ``init_std``: see :func:`init_weights`
    (``None`` keeps every module's own initialisation). The model is returned
    in eval mode (dropout off), as ``from_pretrained`` does; ``.train()`` to train.
    """
    target = target or Target()
    if plan is None:
        plan = select(ir, target, registry=registry, force=force)
    elif force:
        raise ValueError("give either a plan or force, not both")
    device = device if device is not None else target.device
    if isinstance(dtype, str) or dtype is None:
        name = dtype or target.dtype
        if name not in DTYPES:
            raise ValueError(f"unknown dtype '{name}' (known: {', '.join(DTYPES)})")
        dtype = DTYPES[name]
    with torch.device(device):  # parameters are created where they will live
        builder = _Builder(ir, plan, target, registry)
        model = builder.model()
    builder.check_counts()
    if init_std is not None and torch.device(device).type != "meta":
        init_weights(model, init_std)
    if torch.device(device).type != "meta":
        for layer in model.modules():  # DeepNet's init is part of the architecture
            if isinstance(layer, Layer) and layer.residual == "deepnorm":
                deepnorm_init(layer, layer.deepnorm_beta)
    if dtype != torch.float32:
        model.to(dtype=dtype)
    return model.eval()
