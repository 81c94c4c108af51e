"""The prior and multi-head kinds inside built models: specs, the CLI, compiled graphs,
decoding with the cache, the task_ids input, the adaptive span's auxiliary loss and
RealFormer's residual scores through the stack (and its refusal at validation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from txdsl import SpecError
from txdsl.cli import main
from txdsl.plugins import get_registry

ROOT = Path(__file__).resolve().parents[3]
SPECS = ROOT / "specs"
SPEC_MODELS = [("realformer.tx", "realformer"), ("synthesizer.tx", "synthesizer_dense"),
               ("synthesizer.tx", "synthesizer_random"), ("talking_heads.tx", "talking_heads"),
               ("adaptive_span.tx", "adaptive_span"), ("priors.tx", "locality"),
               ("priors.tx", "collaborative"), ("priors.tx", "multi_scale"),
               ("priors.tx", "head_routing"), ("priors.tx", "task_adapter")]
KINDS = {  # kind -> its attention in a tiny decoder (d_model 32, 2 layers, context 128)
    "talking_heads": "talking_heads(heads: 4, kv_heads: 2)",
    "collaborative": "collaborative(heads: 4, shared_dim: 16)",
    "adaptive_span": "adaptive_span(heads: 4, kv_heads: 2, max_span: 64, ramp: 8, init: 0.3)",
    "multi_scale": 'multi_scale(heads: 4, kv_heads: 1, spans: "1|4|16|128")',
    "head_routing": "head_routing(heads: 4, kv_heads: 2)",
    "locality": "locality(heads: 4, kv_heads: 2, width: 3.0)",
    "realformer": "realformer(heads: 4, kv_heads: 2)",
    "synthesizer_dense": "synthesizer_dense(heads: 4, max_len: 128)",
    "synthesizer_random": "synthesizer_random(heads: 4, max_len: 128)",
    "task_adapter": "task_adapter(heads: 4, kv_heads: 2, tasks: 3, max_len: 128, blocks: 4)",
}


def tiny(attention: str, *, layers: int = 2, extra: str = "") -> str:
    return f"""
model tiny {{
  vocab = 64; d_model = 32; context = 128
  embedding {{ tokens = vocab; position = learned(max_len: context) }}
  decoder({layers}) {{
    norm = layernorm; attention = {attention}; ffn = mlp(hidden: 64, act: gelu)
    final_norm = layernorm
    {extra}
  }}
  head = lm(tied: true)
}}
"""


@pytest.fixture(scope="module")
def models():
    """Each kind's tiny decoder, built once (eager)."""
    return {k: txdsl.build(tiny(a), backend="eager", seed=0).module.eval()
            for k, a in KINDS.items()}


@pytest.fixture
def run(monkeypatch, capsys):
    monkeypatch.setenv("TXDSL_PLUGINS", "attention,norms,positions,ffn,heads,embeddings,backends")
    get_registry.cache_clear()

    def call(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    yield call
    get_registry.cache_clear()


# ----------------------------------------------------------------------- specs


def test_specs_check_and_show(run):
    files = sorted({str(SPECS / f) for f, _ in SPEC_MODELS})
    status, out, err = run("check", *files)
    assert status == 0, err
    for file, model in SPEC_MODELS:
        status, out, err = run("show", str(SPECS / file), "--model", model)
        assert status == 0 and "parameters" in out, err


def test_txdsl_verify_passes_for_every_kind(run):
    status, out, err = run("verify", *KINDS)
    assert status == 0, out + err
    assert "0 failed" in out and all(f"attention {k}[reference]" in out for k in KINDS)


@pytest.mark.parametrize("file,model", SPEC_MODELS, ids=lambda v: str(v))
def test_specs_build_eager(file, model, tmp_path):
    built = txdsl.build(SPECS / file, model=model, backend="eager", output=tmp_path / model)
    kind = built.ir.stacks[0].layers[0].attention.kind
    assert built.plan.impl_for("attention", kind) == "reference"
    n = sum(p.numel() for p in built.module.parameters())
    from txdsl.front.estimate import estimate
    assert estimate(built.ir, get_registry()).params == n  # the cost model is exact


# ------------------------------------------------------------ compiled graphs


def every_kind_spec() -> str:
    """A decoder whose layer i uses kind i of KINDS (RealFormer after a score-forming one)."""
    overrides = "\n".join(f"layer[{i}] {{ attention = {KINDS[k]} }}" for i, k in enumerate(KINDS))
    return tiny("full(heads: 4)", layers=len(KINDS), extra=overrides)


def forward_backward(model, ids, task, params=None):
    """Logits and every parameter's gradient (of ``params``, default ``model``)."""
    out = model(input_ids=ids, task_ids=task)
    (out.logits.square().mean() + out.aux_loss).backward()
    params = params if params is not None else model
    grads = {n: p.grad for n, p in params.named_parameters() if p.requires_grad}
    params.zero_grad(set_to_none=True)
    return out.logits.detach(), grads


def test_aot_eager_fullgraph_forward_and_backward_of_every_kind():
    """One graph (fullgraph: no break) through a stack of every kind, forward and backward,
    equal to eager."""
    model = txdsl.build(every_kind_spec(), backend="eager", seed=0).module
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    task = torch.tensor([1, 2])
    want, want_grads = forward_backward(model, ids, task)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    got, grads = forward_backward(compiled, ids, task, params=model)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert grads.keys() == want_grads.keys()
    for name, g in grads.items():
        assert g is not None, name
        torch.testing.assert_close(g, want_grads[name], atol=1e-4, rtol=1e-4)
    torch._dynamo.reset()


@pytest.mark.slow
def test_inductor_forward_and_backward_of_every_kind():
    """The family's one real inductor build (the same stack of every kind)."""
    eager = txdsl.build(every_kind_spec(), backend="eager", seed=0).module
    built = txdsl.build(every_kind_spec(), backend="inductor", seed=0).module
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    task = torch.tensor([0, 2])
    want, want_grads = forward_backward(eager, ids, task)
    got, grads = forward_backward(built, ids, task)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())


# ------------------------------------------------------------------- decoding


@pytest.mark.parametrize("kind", list(KINDS))
def test_cached_decoding_equals_uncached_over_100_tokens(kind, models):
    model = models[kind]
    prompt = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cached = model.generate(prompt, max_new_tokens=100)
        uncached = model.generate(prompt, max_new_tokens=100, use_cache=False)
        assert torch.equal(cached, uncached)
        # and the logits: one token at a time through the cache == one full pass
        seq = cached[:, :60]
        full = model(input_ids=seq).logits
        cache = model.new_cache(2, 60)
        steps = [model(input_ids=seq[:, t:t + 1], past_key_values=cache, use_cache=True,
                       cache_position=torch.tensor([t])).logits for t in range(60)]
    err = (torch.cat(steps, 1) - full).abs().max().item()
    assert err < 1e-4, f"{kind}: cached vs full pass differ by {err}"


# ------------------------------------------------------------ model inputs


def test_task_ids_reach_the_attention_and_are_checked(models):
    model = models["task_adapter"]
    ids = torch.randint(0, 64, (2, 6))
    with torch.no_grad():
        a = model(input_ids=ids, task_ids=torch.tensor([0, 1])).logits
        b = model(input_ids=ids, task_ids=torch.tensor([2, 1])).logits
        none = model(input_ids=ids).logits
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    torch.testing.assert_close(none[0], a[0])  # no task_ids: task 0
    with pytest.raises(ValueError, match=r"task_ids must be \(2,\), one task per row"):
        model(input_ids=ids, task_ids=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"task_ids contains 3, but the model knows 3 tasks"):
        model(input_ids=ids, task_ids=torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="task_ids must be an integer tensor"):
        model(input_ids=ids, task_ids=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="no component of this model is conditioned on a task"):
        models["locality"](input_ids=ids, task_ids=torch.tensor([0, 1]))


def test_adaptive_span_loss_is_on_the_model_output(models):
    model = models["adaptive_span"]
    out = model(input_ids=torch.randint(0, 64, (2, 6)))
    spans = [layer.attention.span_ratio.clamp(0, 1).mean() for layer in model.decoder.layers]
    torch.testing.assert_close(out.aux_losses["adaptive_span"], sum(spans))  # summed over layers
    torch.testing.assert_close(out.aux_loss, out.aux_losses["adaptive_span"])
    out.aux_loss.backward()
    assert all(layer.attention.span_ratio.grad is not None for layer in model.decoder.layers)
    model.zero_grad(set_to_none=True)


# ----------------------------------------------------------------- realformer


def test_realformer_model_adds_the_previous_layers_scores():
    ids = torch.randint(0, 64, (2, 8))
    outs = {}
    for layers in (1, 2):
        real = txdsl.build(tiny("realformer(heads: 4)", layers=layers), seed=0).module.eval()
        full = txdsl.build(tiny("full(heads: 4)", layers=layers), seed=1).module.eval()
        with torch.no_grad():  # larger scores than the init, so the residual shows
            for name, p in real.named_parameters():
                if "q_proj.weight" in name or "k_proj.weight" in name:
                    p.mul_(4.0)
        full.load_state_dict(real.state_dict())
        with torch.no_grad():
            outs[layers] = (real(input_ids=ids).logits, full(input_ids=ids).logits)
    torch.testing.assert_close(*outs[1])  # one layer: nothing to add, full attention
    assert (outs[2][0] - outs[2][1]).abs().max() > 1e-3  # two: the second adds the first's


@pytest.mark.parametrize("before", ["full(heads: 4)", "synthesizer_dense(heads: 4, max_len: 128)"])
def test_realformer_after_a_layer_without_scores_is_refused(before):
    spec = tiny("realformer(heads: 4)", layers=3, extra=f"layer[1] {{ attention = {before} }}")
    with pytest.raises(SpecError) as err:
        txdsl.parse(spec)
    kind = before.split("(")[0]
    text = err.value.render()
    assert (f"attention 'realformer' in layer 2 adds the previous layer's pre-softmax scores, "
            f"but layer 1 has attention '{kind}', which never forms them") in text
    assert err.value.line == 6 and "^" in text


def test_realformer_after_another_score_forming_kind_is_accepted():
    spec = tiny("realformer(heads: 4)", layers=2,
                extra="layer[0] { attention = talking_heads(heads: 4) }")
    model = txdsl.build(spec, seed=0).module
    assert model(input_ids=torch.randint(0, 64, (1, 5))).logits.shape == (1, 5, 64)


def test_realformer_needs_the_previous_layers_heads():
    spec = tiny("realformer(heads: 4)", layers=2,
                extra="layer[0] { attention = talking_heads(heads: 2) }")
    with pytest.raises(SpecError, match=r"layer 0 has heads \(2\) and this one heads \(4\)"):
        txdsl.parse(spec)


@pytest.mark.parametrize("attention", ["collaborative(heads: 4, kv_heads: 2)",
                                       "synthesizer_dense(heads: 4, kv_heads: 2, max_len: 128)"])
def test_kinds_without_a_grouped_query_form_say_so_at_kv_heads(attention):
    with pytest.raises(SpecError) as err:
        txdsl.parse(tiny(attention))
    e = err.value
    assert "has no grouped-query form" in e.message
    assert "kv_heads (2) must equal heads (4)" in e.message
    line = tiny(attention).splitlines()[e.line - 1]
    assert line[e.column - 1:].startswith("kv_heads")  # located at the argument


def test_synthesizer_max_len_shorter_than_the_context_is_located():
    spec = tiny("synthesizer_random(heads: 4, max_len: 64)")
    with pytest.raises(SpecError) as err:
        txdsl.parse(spec)
    e = err.value
    assert "max_len (64) is shorter than the context (128)" in e.message
    assert spec.splitlines()[e.line - 1][e.column - 1:].startswith("max_len")
    assert e.hint == "set max_len: context"
