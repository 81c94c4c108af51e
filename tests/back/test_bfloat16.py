"""``dtype="bfloat16"``: a bf16 build against the float32 build of the same weights, and
against Hugging Face's own model in bf16 (its error is the yardstick), for GPT-2, LLaMA
and BERT-shaped tiny specs; norms, softmax and the decode cache in bf16."""

from __future__ import annotations

import pytest
import torch

import txdsl

from tiny_zoo import SPECS, fixed_input, scaled_weights

# The documented tolerance (README, "bfloat16 and int8 weights"): on a fixed input,
# max |logit - float32 logit| as a fraction of max |float32 logit|, and top-1 agreement.
REL, TOP1 = 0.03, 0.95
AUTO = {"gpt2": "AutoModelForCausalLM", "llama": "AutoModelForCausalLM",
        "bert": "AutoModelForMaskedLM"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Per family: the float32 and bfloat16 builds of one set of (scaled-up) weights."""
    out = {}
    for name, spec in SPECS.items():
        w = scaled_weights(spec, tmp_path_factory.mktemp(name))
        out[name] = {"spec": spec, "weights": w,
                     "float32": txdsl.build(spec, weights=w, progress=False),
                     "bfloat16": txdsl.build(spec, weights=w, dtype="bfloat16", progress=False)}
    return out


def hf_pair(module):
    """Hugging Face's model with ``module``'s weights, in float32 and in bfloat16."""
    import transformers

    config, state = txdsl.to_hf(module)
    pair = []
    for dtype in (torch.float32, torch.bfloat16):
        auto = getattr(transformers, AUTO[module.ir.name.split("_")[0]])
        hf = auto.from_config(config, attn_implementation="sdpa").eval()
        missing = hf.load_state_dict(state, strict=False).missing_keys
        assert all("lm_head" in k or "decoder" in k for k in missing), missing  # tied ones
        hf.tie_weights()
        pair.append(hf.to(dtype))
    return pair


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits.float()


@pytest.mark.parametrize("name", list(SPECS))
def test_bf16_build_vs_float32_and_vs_hugging_face(models, name):
    f32, bf16 = models[name]["float32"], models[name]["bfloat16"]
    assert {p.dtype for p in bf16.module.parameters()} == {torch.bfloat16}
    x = fixed_input(f32.module, seq=32)
    want, got = logits(f32, x), logits(bf16, x)
    assert bf16(**x).logits.dtype == torch.bfloat16
    top = want.abs().max().item()
    ours = (got - want).abs().max().item()
    assert ours <= REL * top, (ours, top)
    assert (got.argmax(-1) == want.argmax(-1)).float().mean().item() >= TOP1

    hf32, hf16 = hf_pair(f32.module)
    assert (logits(hf32, x) - want).abs().max().item() < 1e-4 * top  # the same weights
    theirs = (logits(hf16, x) - want).abs().max().item()
    # bf16 rounding is noise of one size: ours may not be much worse than Hugging Face's
    assert ours <= 1.5 * theirs + 0.005 * top, (ours, theirs)


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_reference_attention_kernel_in_bf16(models, name):
    """The naive attention (a dense mask, its own softmax) holds up in bf16 as SDPA does."""
    m = models[name]
    ref = txdsl.build(m["spec"], weights=m["weights"], dtype="bfloat16", progress=False,
                      force_kernels={"attention": "reference"})
    x = fixed_input(ref.module, seq=32)
    want = logits(m["float32"], x)
    assert (logits(ref, x) - want).abs().max().item() <= REL * want.abs().max().item()


def test_norms_accumulate_in_float32(models):
    """A large common offset would wipe out a bf16 variance; the norms compute it in fp32."""
    for name, norm in [("gpt2", "attention_norm"), ("llama", "attention_norm")]:
        layer = models[name]["bfloat16"].module.decoder.layers[0]
        mod = getattr(layer, norm)
        g = torch.Generator().manual_seed(0)
        x = (64 + torch.randn(3, 64, generator=g)).to(torch.bfloat16)
        xf = x.float()
        if name == "gpt2":  # LayerNorm: (x - mean) / std
            want = (xf - xf.mean(-1, keepdim=True)) / (xf.var(-1, unbiased=False, keepdim=True)
                                                        + 1e-5).sqrt()
        else:  # RMSNorm: x / rms
            want = xf / (xf.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
        w = mod.weight.float()
        want = want * w + (mod.bias.float() if getattr(mod, "bias", None) is not None else 0)
        got = mod(x)
        assert got.dtype == torch.bfloat16
        assert (got.float() - want).abs().max().item() <= 0.02 * want.abs().max().item()


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_generate_in_bf16_cache_equals_no_cache(models, name):
    """The decode cache is allocated in bf16 and gives the tokens a full recompute gives.

    In bf16 the cached step and the full recompute round differently (other shapes,
    other summation orders), so two near-tied logits may swap: the sequences must agree
    up to a first difference, and there the two tokens must be tied within bf16's
    rounding (1% of the largest logit) in the full recompute's own logits."""
    model = models[name]["bfloat16"].module
    ids = fixed_input(model)["input_ids"][:, :5]
    cached = model.generate(ids, 8)
    full = model.generate(ids, 8, use_cache=False)
    for row in range(ids.shape[0]):
        differ = (cached[row] != full[row]).nonzero()
        if len(differ) == 0:
            continue
        t = int(differ[0])  # the first generated position where they part
        with torch.no_grad():
            logits = model(full[row:row + 1, :t]).logits[0, -1].float()
        gap = (logits[full[row, t]] - logits[cached[row, t]]).abs().item()
        assert gap <= 0.01 * logits.abs().max().item(), (
            f"row {row}: cached and uncached decoding part at {t} by a logit gap of {gap}")
    floats = {t.dtype for t in _tensors(model.new_cache(2, 16)) if t.is_floating_point()}
    assert floats == {torch.bfloat16}


def _tensors(obj, depth: int = 4):
    """Every tensor reachable from ``obj``'s attributes, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth and isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v, depth - 1)
    elif depth and isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v, depth - 1)
    elif depth and hasattr(obj, "__dict__") and not isinstance(obj, torch.nn.Module):
        for v in vars(obj).values():
            yield from _tensors(v, depth - 1)


def test_no_graph_break_in_bf16(models):
    built = models["llama"]["bfloat16"]
    x = fixed_input(built.module)
    compiled = torch.compile(built.module, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert torch.equal(compiled(**x).logits, built.module(**x).logits)


@pytest.mark.slow
def test_aot_package_in_bf16(models, tmp_path):
    """torch.export + AOTInductor in bf16: equals eager bf16 within bf16 rounding, and loads."""
    m = models["gpt2"]
    aot = txdsl.build(m["spec"], weights=m["weights"], dtype="bfloat16", backend="aot",
                      output=tmp_path / "a", progress=False)
    x = fixed_input(aot.module, seq=16)
    want = logits(m["bfloat16"], x)
    got = logits(aot, x)
    assert (got - want).abs().max().item() <= 0.02 * want.abs().max().item()
    assert torch.equal(logits(txdsl.load(tmp_path / "a"), x), got)
