"""Construction: sharing, meta device, parameter counts, stacks with positions, errors."""

from __future__ import annotations

import pytest
import torch

from ir_helpers import comp, decoder_only, encoder_decoder, encoder_only, full, layernorm
from txdsl.back.construct import construct, iter_components
from txdsl.errors import SpecError
from txdsl.ir import EmbeddingIR, HeadIR, LayerIR, ModelIR, StackIR


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared parameters count once


def expected_params(ir: ModelIR, registry) -> int:
    """``txdsl.front.estimate`` when it exists, else the components' own ``param_count``."""
    try:
        from txdsl.front.estimate import estimate
    except ImportError:
        estimate = None
    if estimate is not None:
        return estimate(ir, registry).params
    e = ir.embedding
    total = (e.tokens or 0) * e.size + e.token_types * e.size + (e.size if e.cls_token else 0)
    if e.size != ir.d_model:
        total += e.size * ir.d_model + ir.d_model
    for _, c, dims in iter_components(ir, registry):
        total += registry.args(c.family, c.kind).model_validate(c.args).param_count(dims)
    return total


def albert_like(n_layers: int = 4) -> ModelIR:
    return decoder_only(n_layers=n_layers, size=16, tied=False,
                        shares=lambda i: 0 if i > 0 else None)


VIT = ModelIR(
    name="vit", d_model=32,
    embedding=EmbeddingIR(size=32, cls_token=True,
                          patches=comp("patches", "conv", size=4, channels=3, image=8),
                          position=comp("position", "learned", max_len=5)),
    encoder=StackIR(role="encoder", causal=False,
                    layers=tuple(LayerIR(index=i, residual="pre", norm=layernorm(1e-12),
                                         attention=full(4), ffn=comp("ffn", "mlp", hidden=64))
                                 for i in range(2)),
                    final_norm=layernorm(1e-12)),
    heads=(HeadIR(name="classifier", head=comp("head", "classifier", classes=10)),),
)

MODELS = {
    "gpt2": decoder_only(),
    "albert": albert_like(),
    "sandwich": decoder_only(residual="sandwich"),
    "bert": encoder_only(),
    "seq2seq": encoder_decoder(),
    "llama": decoder_only(stack_position=comp("position", "rope"), norm=comp("norm", "rmsnorm"),
                          ffn=comp("ffn", "swiglu", hidden=48, bias=False),
                          attention=full(4, kv_heads=2, bias=False), tied=False),
    "alibi": decoder_only(stack_position=comp("position", "alibi")),
    "t5_bias": decoder_only(stack_position=comp("position", "t5_bias", bidirectional=False)),
    "vit": VIT,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_param_count_matches_estimate(name, registry):
    ir = MODELS[name]
    assert n_params(construct(ir, registry=registry)) == expected_params(ir, registry)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_meta_device_allocates_nothing(name, registry):
    ir = MODELS[name]
    model = construct(ir, registry=registry, device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert n_params(model) == expected_params(ir, registry)


def test_shared_layers_are_one_module(registry):
    model = construct(albert_like(4), registry=registry)
    layers = model.decoder.layers
    assert all(layers[i] is layers[0] for i in range(4))
    for a, b in zip(layers[0].parameters(), layers[3].parameters()):
        assert a is b
    one_layer = n_params(layers[0])
    unshared = construct(decoder_only(n_layers=4, size=16, tied=False), registry=registry)
    assert n_params(unshared) - n_params(model) == 3 * one_layer
    # gradients of every use accumulate in the one parameter set
    out = model(torch.randint(0, 50, (2, 6))).logits
    out.sum().backward()
    assert layers[0].attention.q_proj.weight.grad is not None


def test_sharing_a_different_layer_is_refused(registry):
    ir = decoder_only(n_layers=2)
    bad = ir.decoder.layers[1].model_copy(update={"shares": 0, "ffn": comp("ffn", "mlp",
                                                                         hidden=16)})
    ir = ir.model_copy(update={"decoder": ir.decoder.model_copy(
        update={"layers": (ir.decoder.layers[0], bad)})})
    with pytest.raises(SpecError, match="differs from it in ffn"):
        construct(ir, registry=registry)


def test_tied_head_shares_the_token_embedding(registry):
    model = construct(decoder_only(), registry=registry)
    assert model.heads["lm"].weight is model.embedding.tokens.weight


def test_outputs_and_head_selection(registry):
    model = construct(encoder_only(), registry=registry)
    x = torch.randint(0, 50, (2, 6))
    out = model(x, attention_mask=torch.ones_like(x), output_hidden_states=True)
    assert set(out.heads) == {"mlm", "pooler"}
    assert out.logits is out.heads["mlm"]  # the mlm head gives the logits
    assert out.heads["pooler"].shape == (2, 32)
    assert len(out.hidden_states) == 3 and out.hidden_states[-1] is out.last_hidden_state
    assert out.past_key_values is None
    assert model.ir == encoder_only() and model.plan.impl_for("attention", "full") == "sdpa"


def test_encoder_decoder_forward(registry):
    model = construct(encoder_decoder(), registry=registry)
    src, tgt = torch.randint(0, 40, (2, 7)), torch.randint(0, 40, (2, 5))
    out = model(src, decoder_input_ids=tgt)
    assert out.logits.shape == (2, 5, 40)
    assert out.encoder_last_hidden_state.shape == (2, 7, 32)
    # the decoder reads the encoder: changing the source changes the logits
    other = model(torch.randint(0, 40, (2, 7)), decoder_input_ids=tgt).logits
    assert not torch.allclose(out.logits, other)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(src)


@pytest.mark.parametrize("name", ["llama", "alibi", "t5_bias"])
def test_stack_positions_are_causal_and_finite(name, registry):
    """Later tokens never change earlier logits, whatever acts inside attention."""
    model = construct(MODELS[name], registry=registry)
    x = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        full_logits = model(x).logits
        prefix = model(x[:, :5]).logits
    assert torch.isfinite(full_logits).all()
    torch.testing.assert_close(full_logits[:, :5], prefix, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "seq2seq", "llama"])
def test_forward_compiles_as_one_graph(name, registry):
    model = construct(MODELS[name], registry=registry)
    x = torch.randint(1, 40, (2, 7))
    mask = torch.ones_like(x)
    mask[1, 5:] = 0
    kw = {"attention_mask": mask}
    if model.is_encoder_decoder:
        kw.update(decoder_input_ids=x[:, :4], decoder_attention_mask=mask[:, :4])
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, **kw).logits, model(x, **kw).logits)


def test_dtype_and_init(registry):
    model = construct(decoder_only(), registry=registry, dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    model = construct(decoder_only(), registry=registry)
    w = model.decoder.layers[0].attention.q_proj.weight
    assert 0.01 < w.std().item() < 0.03  # N(0, 0.02)
    assert not model.training  # built for inference; .train() to train


def test_declared_kind_without_implementation(planned_registry):
    registry = planned_registry
    ir = decoder_only(attention=comp("attention", "planned", heads=4))
    with pytest.raises(SpecError, match="attention 'planned' has no implementation yet "
                                        r"\(declared by plugin 'planned'\)"):
        construct(ir, registry=registry)


def test_unknown_kind_and_bad_args(registry):
    with pytest.raises(SpecError, match="unknown attention 'ful'") as err:
        construct(decoder_only(attention=comp("attention", "ful", heads=4)), registry=registry)
    assert "did you mean 'full'" in err.value.render()
    with pytest.raises(SpecError, match="argument 'head'"):
        construct(decoder_only(attention=comp("attention", "full", head=4)), registry=registry)
    with pytest.raises(SpecError, match="not divisible by heads"):
        construct(decoder_only(attention=full(5)), registry=registry)


def test_positions_in_the_wrong_place(registry):
    with pytest.raises(SpecError, match="declare it on the stack"):
        construct(decoder_only(position=comp("position", "rope")), registry=registry)
    ir = decoder_only(position=comp("position", "learned", max_len=32),
                      stack_position=comp("position", "sinusoidal"))
    with pytest.raises(SpecError, match="declare it in the embedding"):
        construct(ir, registry=registry)


def test_component_paths(registry):
    paths = [p for p, _, _ in iter_components(albert_like(3), registry)]
    assert "decoder.layers.0.attention" in paths and "decoder.layers.1.attention" not in paths
    assert "embedding.norm" in paths and "heads.lm" in paths
    dims = {p: d for p, _, d in iter_components(MODELS["llama"], registry)}
    assert dims["decoder.position"].heads == 4 and dims["decoder.position"].head_dim == 8
    assert dims["heads.lm"].heads is None


def test_forward_exports(registry):
    """torch.export (the aot backend's first step) traces the forward, output included."""
    model = construct(MODELS["gpt2"], registry=registry)
    x = torch.randint(1, 50, (2, 7))
    mask = torch.ones_like(x)
    exported = torch.export.export(model, (x,), {"attention_mask": mask})
    out = exported.module()(x, attention_mask=mask)
    torch.testing.assert_close(out.logits, model(x, attention_mask=mask).logits)
