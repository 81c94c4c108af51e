"""Heads against their equations and HF's BERT, ALBERT and ELECTRA heads."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import txdsl_heads
from txdsl.plugins import load_registry
from txdsl.sdk import ArgError, BuildContext, Dims

REGISTRY = load_registry({"heads": txdsl_heads})
D, E, V = 16, 8, 30


def context(d_model: int = D, embed_size: int = D, vocab: int | None = V) -> BuildContext:
    dims = Dims(d_model=d_model, width=d_model, embed_size=embed_size, vocab=vocab)
    shared = {"token_embedding": nn.Embedding(vocab, embed_size)} if vocab else {}
    return BuildContext(dims=dims, shared=shared)


def build(kind: str, ctx: BuildContext | None = None, **args) -> nn.Module:
    impl = REGISTRY.implementations("head", kind)[0]
    return impl.build(impl.args(**args), ctx or context()).eval()


def randomise(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def hidden(b: int = 2, t: int = 5, d: int = D) -> torch.Tensor:
    return torch.randn(b, t, d)


# ------------------------------------------------------------------------- lm


def test_lm_tied_shares_the_embedding_parameter():
    ctx = context()
    emb = ctx.shared["token_embedding"]
    head = build("lm", ctx)
    assert head.weight is emb.weight and head.bias is None
    h = hidden()
    torch.testing.assert_close(head(h), h @ emb.weight.T)
    # one tensor under both names: a model's state_dict holds it twice, sharing storage
    model = nn.ModuleDict({"embedding": emb, "head": head})
    state = model.state_dict()
    assert state["head.weight"].data_ptr() == state["embedding.weight"].data_ptr()
    assert len(list(model.parameters())) == 1
    head(h).sum().backward()  # gradients reach the embedding
    assert emb.weight.grad is not None and emb.weight.grad.abs().sum() > 0


def test_lm_untied_with_bias():
    ctx = context()
    head = randomise(build("lm", ctx, tied=False, bias=True))
    assert head.weight is not ctx.shared["token_embedding"].weight
    shapes = [(n, tuple(p.shape)) for n, p in head.named_parameters()]
    assert shapes == [("weight", (V, D)), ("bias", (V,))]
    h = hidden()
    torch.testing.assert_close(head(h), h @ head.weight.T + head.bias)
    tied_bias = build("lm", ctx, bias=True)
    assert [n for n, _ in tied_bias.named_parameters()] == ["weight", "bias"]
    assert torch.equal(tied_bias.bias, torch.zeros(V))


def test_lm_check_messages():
    lm = REGISTRY.args("head", "lm")
    with pytest.raises(ArgError) as err:
        lm().check(context(embed_size=E).dims)
    assert "embed_size (8)" in str(err.value) and "d_model (16)" in str(err.value)
    assert err.value.arg == "tied" and "mlm head" in err.value.hint
    lm(tied=False).check(context(embed_size=E).dims)  # untied: any embedding width
    with pytest.raises(ArgError, match="vocab"):
        lm().check(context(vocab=None).dims)
    with pytest.raises(ArgError, match="no token embedding") as err:
        build("lm", BuildContext(dims=context().dims))  # tied, but nothing shared
    assert err.value.arg == "tied"
    with pytest.raises(ArgError, match=r"\(31, 16\)"):
        wrong = {"token_embedding": nn.Embedding(31, D)}
        build("lm", BuildContext(dims=context().dims, shared=wrong))


# ------------------------------------------------------------------------ mlm


def copy_to_bert(head: nn.Module, ref: nn.Module) -> None:
    with torch.no_grad():
        ref.transform.dense.load_state_dict(head.transform.state_dict())
        ref.transform.LayerNorm.load_state_dict(head.norm.state_dict())
        ref.decoder.weight.copy_(head.decoder.weight)
        ref.decoder.bias.copy_(head.bias)  # HF ties decoder.bias to bias inside a full model
        ref.bias.copy_(head.bias)


@pytest.mark.parametrize("act, hf_act",
                         [("gelu", "gelu"), ("gelu_tanh", "gelu_new"), ("relu", "relu")])
def test_mlm_matches_bert(act, hf_act):
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLMPredictionHead

    ctx = context()
    head = randomise(build("mlm", ctx, act=act))
    assert head.decoder.weight is ctx.shared["token_embedding"].weight
    assert sorted(n for n, _ in head.named_parameters()) == [
        "bias", "decoder.weight", "norm.bias", "norm.weight", "transform.bias", "transform.weight"]
    ref = BertLMPredictionHead(BertConfig(hidden_size=D, vocab_size=V, hidden_act=hf_act,
                                          layer_norm_eps=1e-12)).eval()
    copy_to_bert(head, ref)
    h = hidden()
    torch.testing.assert_close(head(h), ref(h), atol=1e-5, rtol=1e-5)


def test_mlm_factorized_matches_albert():
    from transformers import AlbertConfig
    from transformers.models.albert.modeling_albert import AlbertMLMHead

    ctx = context(embed_size=E)
    head = randomise(build("mlm", ctx, eps=1e-5))
    assert head.transform.out_features == E and head.decoder.weight.shape == (V, E)
    config = AlbertConfig(hidden_size=D, embedding_size=E, vocab_size=V, hidden_act="gelu",
                          layer_norm_eps=1e-5, num_attention_heads=2, intermediate_size=32)
    ref = AlbertMLMHead(config).eval()
    with torch.no_grad():
        ref.dense.load_state_dict(head.transform.state_dict())
        ref.LayerNorm.load_state_dict(head.norm.state_dict())
        ref.decoder.weight.copy_(head.decoder.weight)
        ref.decoder.bias.copy_(head.bias)
    h = hidden()
    torch.testing.assert_close(head(h), ref(h), atol=1e-5, rtol=1e-5)


def test_mlm_untied_without_bias():
    ctx = context()
    head = randomise(build("mlm", ctx, tied=False, bias=False))
    assert head.decoder.weight is not ctx.shared["token_embedding"].weight and head.bias is None
    h = hidden()
    t = head.transform(h)
    g = 0.5 * t * (1 + torch.erf(t / 2 ** 0.5))
    n = (g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 1e-12)
    expected = (n * head.norm.weight + head.norm.bias) @ head.decoder.weight.T
    torch.testing.assert_close(head(h), expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------- pooler, rtd, ...


def test_pooler_matches_bert():
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertPooler

    head = randomise(build("pooler"))
    ref = BertPooler(BertConfig(hidden_size=D))
    ref.dense.load_state_dict(head.dense.state_dict())
    h = hidden()
    out = head(h, attention_mask=torch.ones(2, 5))
    assert out.shape == (2, D)
    torch.testing.assert_close(out, ref(h), atol=1e-6, rtol=1e-6)
    plain = build("pooler", act="none")
    plain.load_state_dict(head.state_dict())
    torch.testing.assert_close(plain(h), h[:, 0] @ head.dense.weight.T + head.dense.bias)


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_rtd_matches_electra(act):
    from transformers import ElectraConfig
    from transformers.models.electra.modeling_electra import ElectraDiscriminatorPredictions

    head = randomise(build("rtd", act=act))
    assert [n for n, _ in head.named_parameters()] == [
        "dense.weight", "dense.bias", "dense_prediction.weight", "dense_prediction.bias"]
    ref = ElectraDiscriminatorPredictions(ElectraConfig(hidden_size=D, hidden_act=act))
    ref.load_state_dict(head.state_dict())
    h = hidden()
    out = head(h)
    assert out.shape == (2, 5)
    torch.testing.assert_close(out, ref(h), atol=1e-6, rtol=1e-6)


def test_classifier_first_token():
    head = randomise(build("classifier", classes=3))
    h = hidden()
    out = head(h)
    assert out.shape == (2, 3)
    torch.testing.assert_close(out, h[:, 0] @ head.out.weight.T + head.out.bias)


def test_classifier_mean_pooling_respects_the_mask():
    head = randomise(build("classifier", classes=3, pool="mean", bias=False))
    h = hidden(3, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    expected = torch.stack([h[0].mean(0), h[1, :3].mean(0), h[2, 0]]) @ head.out.weight.T
    torch.testing.assert_close(head(h, attention_mask=mask), expected, atol=1e-6, rtol=1e-6)
    noisy = h.clone()
    noisy[mask == 0] = 1e4  # whatever sits in padded positions is ignored
    out = head(noisy, attention_mask=mask.bool())
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head(h), h.mean(1) @ head.out.weight.T, atol=1e-6, rtol=1e-6)
    empty = head(h, attention_mask=torch.zeros(3, 6))
    assert torch.isfinite(empty).all()  # an all-padding row gives zeros, not NaN


def test_token_classifier():
    head = randomise(build("token_classifier", classes=4, bias=False, dropout=0.1))
    h = hidden()
    out = head(h, attention_mask=torch.ones(2, 5))
    assert out.shape == (2, 5, 4) and head.out.bias is None
    torch.testing.assert_close(out, h @ head.out.weight.T)


def test_pooled_classifier_is_dense_act_then_out_on_the_first_token():
    """BERT's sequence classifier: out(act(dense(h[:, 0]))), tanh by default, gelu for ELECTRA."""
    for act, f in (("tanh", torch.tanh), ("gelu", torch.nn.functional.gelu)):
        head = randomise(build("pooled_classifier", classes=3, act=act))
        h = hidden()
        pooled = f(h[:, 0] @ head.dense.weight.T + head.dense.bias)
        expected = pooled @ head.out.weight.T + head.out.bias
        torch.testing.assert_close(head(h, attention_mask=torch.ones(2, 5)), expected)


def test_every_head_is_tested_and_takes_a_mask():
    assert REGISTRY.kinds("head") == sorted(
        ["lm", "mlm", "pooler", "classifier", "token_classifier", "rtd", "pooled_classifier"])
    shapes = {"lm": (2, 5, V), "mlm": (2, 5, V), "pooler": (2, D), "classifier": (2, 3),
              "token_classifier": (2, 5, 3), "rtd": (2, 5), "pooled_classifier": (2, 3)}
    for kind, shape in shapes.items():
        args = {"classes": 3} if "classifier" in kind else {}
        head = build(kind, **args)
        assert head(hidden(), attention_mask=torch.ones(2, 5)).shape == shape
        low = head.to(torch.bfloat16)(hidden().to(torch.bfloat16))
        assert low.dtype == torch.bfloat16 and low.shape == shape


def test_bad_arguments_are_rejected():
    args = REGISTRY.args
    with pytest.raises(ValidationError):
        args("head", "classifier")()  # classes is required
    with pytest.raises(ValidationError):
        args("head", "classifier")(classes=2, pool="max")
    with pytest.raises(ValidationError):
        args("head", "mlm")(act="tanh")
    with pytest.raises(ValidationError):
        args("head", "lm")(tie=True)
    with pytest.raises(ArgError, match="vocab"):
        args("head", "mlm")().check(context(vocab=None).dims)
