"""Every buildable norm, ffn, head and patches kind: param_count(dims) is the built module's
real parameter count, and the cost model answers; plus the check() messages."""

from __future__ import annotations

import pytest
from torch import nn

import txdsl_embeddings
import txdsl_ffn
import txdsl_heads
import txdsl_norms
from txdsl.plugins import load_registry
from txdsl.sdk import ArgError, BuildContext, Dims

REGISTRY = load_registry({"norms": txdsl_norms, "ffn": txdsl_ffn, "heads": txdsl_heads,
                          "embeddings": txdsl_embeddings})

DIMS = [
    Dims(d_model=16, width=16, embed_size=16, vocab=50),
    Dims(d_model=24, width=8, embed_size=8, vocab=37),  # factorized: acts on E = 8
    Dims(d_model=12, width=12, embed_size=12, vocab=7),
]

# Argument combinations per kind; a kind registered without an entry here fails the test.
ARGS: dict[tuple[str, str], list[dict]] = {
    ("norm", "layernorm"): [{}, {"bias": False}],
    ("norm", "rmsnorm"): [{}, {"offset": True}],
    ("norm", "scalenorm"): [{}],
    ("norm", "fixnorm"): [{}, {"scale": 3.0}],
    ("norm", "batchnorm"): [{}],
    ("ffn", "mlp"): [{"hidden": 20}, {"hidden": 7, "bias": False, "act": "relu"}],
    ("ffn", "glu"): [{"hidden": 20}, {"hidden": 9, "bias": True}],
    ("ffn", "reglu"): [{"hidden": 20}, {"hidden": 9, "bias": True}],
    ("ffn", "geglu"): [{"hidden": 20, "approximate": "tanh"}, {"hidden": 9, "bias": True}],
    ("ffn", "swiglu"): [{"hidden": 20}, {"hidden": 9, "bias": True}],
    ("ffn", "moe"): [{"hidden": 20, "experts": 4, "top_k": 1},
                     {"hidden": 9, "experts": 3, "gated": False, "bias": True}],
    ("head", "lm"): [{}, {"bias": True}, {"tied": False}, {"tied": False, "bias": True}],
    ("head", "mlm"): [{}, {"bias": False}, {"tied": False}, {"tied": False, "bias": False}],
    ("head", "pooler"): [{}, {"act": "none"}],
    ("head", "classifier"): [{"classes": 3}, {"classes": 5, "bias": False, "pool": "mean"}],
    ("head", "token_classifier"): [{"classes": 3}, {"classes": 2, "bias": False}],
    ("head", "rtd"): [{}],
    ("head", "pooled_classifier"): [{"classes": 3}, {"classes": 2, "act": "gelu"}],
    ("patches", "conv"): [{"size": 4, "image": 16}, {"size": 8, "image": 16, "channels": 1}],
}

OURS = {"norm", "ffn", "head", "patches"}


def buildable() -> list[tuple[str, str]]:
    return sorted({(i.family, i.name) for i in REGISTRY.all() if i.build is not None})


def test_every_buildable_kind_has_cases():
    assert set(buildable()) == set(ARGS)


def fits(family: str, kind: str, args: dict, dims: Dims) -> bool:
    try:
        REGISTRY.args(family, kind)(**args).check(dims)
    except ArgError:
        return False
    return True


def cases():
    """Every (args, dims) combination that passes check() (the others are tested below)."""
    for (family, kind), combos in sorted(ARGS.items()):
        for n, args in enumerate(combos):
            for m, dims in enumerate(DIMS):
                if fits(family, kind, args, dims):
                    yield pytest.param(family, kind, args, dims, id=f"{family}-{kind}-a{n}-d{m}")


def own_parameters(module: nn.Module, shared: dict) -> int:
    """Unique parameters, leaving out the token embedding a tied head shares."""
    exclude = {id(m.weight) for m in shared.values()}
    return sum(p.numel() for p in module.parameters() if id(p) not in exclude)


@pytest.mark.parametrize("family, kind, args, dims", list(cases()))
def test_param_count_is_exact(family, kind, args, dims):
    model = REGISTRY.args(family, kind)(**args)
    shared = {"token_embedding": nn.Embedding(dims.vocab, dims.embed_size)}
    for impl in REGISTRY.implementations(family, kind):
        module = impl.build(model, BuildContext(dims=dims, shared=shared))
        assert isinstance(module, nn.Module)
        assert model.param_count(dims) == own_parameters(module, shared), impl.impl
    flops = model.flops_per_token(dims, 32)
    assert isinstance(flops, int) and flops > 0


def test_every_case_is_counted_on_some_dims():
    for (family, kind), combos in ARGS.items():
        for args in combos:
            assert any(fits(family, kind, args, d) for d in DIMS), f"{family} {kind}({args})"


def test_declared_kinds_count_too():
    declared = [i for i in REGISTRY.all() if i.build is None]
    assert declared == []  # moe, the last declared one here, is built now
    moe = REGISTRY.args("ffn", "moe")(hidden=20, experts=4, top_k=1)
    assert moe.param_count(DIMS[0]) == 4 * 3 * 16 * 20 + 16 * 4
    assert moe.flops_per_token(DIMS[0], 32) > 0


def test_tied_heads_count_no_embedding():
    dims = DIMS[0]
    shared = {"token_embedding": nn.Embedding(dims.vocab, dims.embed_size)}
    for kind in ("lm", "mlm"):
        impl = REGISTRY.implementations("head", kind)[0]
        head = impl.build(impl.args(), BuildContext(dims=dims, shared=shared))
        assert any(p is shared["token_embedding"].weight for p in head.parameters())
    lm = REGISTRY.args("head", "lm")
    assert lm().param_count(dims) == 0 and lm(tied=False).param_count(dims) == 50 * 16


CHECKS = [
    ("head", "lm", {}, Dims(d_model=16, width=16, embed_size=8, vocab=50),
     r"a tied lm head needs embed_size \(8\) == d_model \(16\)", "tied"),
    ("head", "lm", {"tied": False}, Dims(d_model=16, width=16, embed_size=16), "vocab", None),
    ("head", "mlm", {}, Dims(d_model=16, width=16, embed_size=8), "vocab", None),
    ("patches", "conv", {"size": 5, "image": 16}, DIMS[0],
     r"image \(16\) is not divisible by the patch size \(5\)", "size"),
    ("ffn", "moe", {"hidden": 8, "experts": 2, "top_k": 4}, DIMS[0],
     r"top_k \(4\) is larger than experts \(2\)", "top_k"),
]


@pytest.mark.parametrize("family, kind, args, dims, message, arg", CHECKS,
                         ids=[f"{c[1]}-{c[5]}" for c in CHECKS])
def test_check_messages(family, kind, args, dims, message, arg):
    with pytest.raises(ArgError, match=message) as err:
        REGISTRY.args(family, kind)(**args).check(dims)
    assert err.value.arg == arg
    for impl in REGISTRY.implementations(family, kind):  # building checks too
        with pytest.raises(ArgError, match=message):
            shared = {"token_embedding": nn.Embedding(dims.vocab or 2, dims.embed_size)}
            impl.build(REGISTRY.args(family, kind)(**args), BuildContext(dims=dims, shared=shared))


def test_lm_hint_points_to_mlm():
    with pytest.raises(ArgError) as err:
        REGISTRY.args("head", "lm")().check(Dims(d_model=16, width=16, embed_size=8, vocab=50))
    assert "use an mlm head" in err.value.hint


def test_cost_models_scale_as_documented():
    dims = DIMS[0]
    mlp = REGISTRY.args("ffn", "mlp")(hidden=64)
    assert mlp.flops_per_token(dims, 128) == 2 * mlp.param_count(dims)
    lm = REGISTRY.args("head", "lm")()
    assert lm.flops_per_token(dims, 128) == 2 * 16 * 50  # tied or not, the matmul runs
    conv = REGISTRY.args("patches", "conv")(size=4, image=16)
    assert conv.flops_per_token(dims, 16) == 2 * 3 * 16 * 16
