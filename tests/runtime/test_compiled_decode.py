"""The compiled decode step: the same tokens as eager decoding, compiled once, no mask work.

One tiny GPT-2-shaped model (2 layers, d_model 32, vocab 96, context 128), its
weights redrawn at std 0.3 so logits are far from ties. Most tests compile the
step with dynamo's ``aot_eager`` backend (the same graph capture, seconds);
one slow test runs the real Inductor build, as ``Built.generate`` and
``txdsl.load(...).generate`` use it.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import txdsl
from txdsl.back.weights import save_weights
from txdsl.runtime.decode import CompiledStep
from txdsl.runtime.generate import cache_capacity, generate

SPEC = """
model tiny_gpt2 {
  vocab = 96
  d_model = 32
  heads = 2
  layers = 2
  context = 128

  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }

  decoder(layers) {
    residual = pre
    norm = layernorm(eps: 1e-5)
    attention = full(heads: heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu_tanh)
    final_norm = layernorm(eps: 1e-5)
  }

  head = lm(tied: true)
}
"""
NEW = 100


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An inductor build (the forward not warmed up) with std-0.3 weights, and its artifact."""
    tmp = tmp_path_factory.mktemp("decode")
    eager = txdsl.build(SPEC, progress=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in eager.module.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    save_weights(eager.module, tmp / "w.safetensors")
    return txdsl.build(SPEC, backend="inductor", options={"warmup": False},
                       weights=tmp / "w.safetensors", output=tmp / "art", progress=False)


@pytest.fixture(scope="module")
def model(built):
    return built.module


def prompt(B: int = 2, T: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 96, (B, T), generator=torch.Generator().manual_seed(seed))


def left_padded() -> tuple[torch.Tensor, torch.Tensor]:
    ids = prompt(seed=1)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.fixture(scope="module")
def step():
    """One aot_eager-compiled step shared by the module, with its compile counter."""
    counter = CompileCounterWithBackend("aot_eager")
    return CompiledStep(backend=counter), counter


@torch.no_grad()
def test_prefill_logits_to_keep_is_the_full_logits_last_position(model):
    ids, mask = left_padded()
    full = model(ids, attention_mask=mask).logits  # (B, T, V)
    last = model(ids, attention_mask=mask, logits_to_keep=1).logits
    assert last.shape == (2, 1, 96)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-6, rtol=1e-6)
    cache = model.new_cache(2, 16)
    cached = model(ids, attention_mask=mask, past_key_values=cache, use_cache=True,
                   logits_to_keep=3).logits
    torch.testing.assert_close(cached, full[:, -3:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="logits_to_keep"):
        model(ids, logits_to_keep=-1)


@torch.no_grad()
def test_no_recompilation_across_100_steps_nor_across_calls(model, step):
    compiled, counter = step
    eager = model.generate(prompt(), NEW)
    before = counter.frame_count
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = generate(model, prompt(), NEW, step=compiled)
    assert torch.equal(got, eager)
    assert counter.frame_count >= 1 and counter.frame_count - before <= 1  # compiled once
    frames = counter.frame_count
    # another prompt length of the same capacity bucket reuses the same graph
    assert cache_capacity(model, 5 + 90) == cache_capacity(model, 8 + NEW) == 128
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = generate(model, prompt(T=5, seed=3), 90, step=compiled)
    assert torch.equal(got, model.generate(prompt(T=5, seed=3), 90))
    assert counter.frame_count == frames


@torch.no_grad()
def test_compiled_left_padded_batch_equals_eager(model, step):
    compiled, _ = step
    ids, mask = left_padded()
    got = generate(model, ids, NEW, attention_mask=mask, step=compiled)
    assert torch.equal(got, model.generate(ids, NEW, attention_mask=mask))
    alone = model.generate(ids[1:, 3:], NEW)  # the padded row decodes as it would alone
    assert torch.equal(got[1, 3:], alone[0])


@torch.no_grad()
def test_compiled_eos_stops_and_pads_as_eager(model, step):
    compiled, _ = step
    x = prompt()
    greedy = model.generate(x, NEW)
    eos = int(greedy[0, 8 + 5])  # row 0's sixth new token
    got = generate(model, x, NEW, eos_token_id=eos, pad_token_id=0, step=compiled)
    want = model.generate(x, NEW, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(got, want)
    first = (got[0, 8:] == eos).nonzero()[0].item()
    assert (got[0, 8 + first + 1:] == 0).all()


@torch.no_grad()
def test_compiled_sampling_equals_eager_with_the_same_seed(model, step):
    compiled, _ = step
    x = prompt()

    def sample(fn, seed):
        g = torch.Generator().manual_seed(seed)
        return fn(x, 40, do_sample=True, temperature=1.5, top_k=20, top_p=0.9, generator=g)

    got = sample(lambda *a, **k: generate(model, *a, step=compiled, **k), 1)
    assert torch.equal(got, sample(model.generate, 1))
    assert not torch.equal(got, sample(model.generate, 2))


@torch.no_grad()
def test_no_padding_means_causality_alone(model):
    """Decided once on the host: an unpadded batch never carries a key-padding mask."""
    seen: list[bool] = []

    def spy(_, args, kwargs):
        seen.append(kwargs["mask"].key_padding is not None)

    handle = model.decoder.layers[0].attention.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        model.generate(prompt(), 4, attention_mask=torch.ones(2, 8, dtype=torch.long))
        assert seen == [False] * 4  # prefill and three steps: causality alone
        seen.clear()
        ids, mask = left_padded()
        model.generate(ids, 4, attention_mask=mask)
        assert seen == [True] * 4
    finally:
        handle.remove()


@pytest.mark.slow
@torch.no_grad()
def test_inductor_build_and_loaded_artifact_decode_with_the_compiled_step(built):
    """The real thing: one Inductor compile of the step, shared by the build and the
    artifact loaded from it (same shapes, so the loaded model reuses the graph)."""
    assert isinstance(built.lowered.decode_step, CompiledStep)
    # The aot_eager steps above compiled the same step function: forget them, so the
    # Inductor compile below is the first (error_on_recompile would count it otherwise).
    torch._dynamo.reset()
    x = prompt()
    eager = built.module.generate(x, NEW)
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = built.generate(x, NEW)
        assert torch.equal(got, eager)
        assert torch.equal(built.lowered.generate(x, NEW), eager)
        eos = int(eager[1, 8 + 10])
        assert torch.equal(built.generate(x, NEW, eos_token_id=eos),
                           built.module.generate(x, NEW, eos_token_id=eos))
        loaded = txdsl.load(built.artifact)
        assert isinstance(loaded.decode_step, CompiledStep)
        assert torch.equal(loaded.generate(x, NEW), eager)


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@torch.no_grad()
def test_cuda_graph_step_equals_eager_on_cuda(tmp_path):
    """On CUDA the step runs as CUDA graphs (mode reduce-overhead): same tokens as eager."""
    built = txdsl.build(SPEC, backend="inductor", device="cuda", options={"warmup": False},
                        progress=False)
    assert built.lowered.decode_step.mode == "reduce-overhead"
    x = prompt().cuda()
    assert torch.equal(built.generate(x, NEW), built.module.generate(x, NEW))
    ids, mask = left_padded()
    assert torch.equal(built.generate(ids.cuda(), NEW, attention_mask=mask.cuda()),
                       built.module.generate(ids.cuda(), NEW, attention_mask=mask.cuda()))
