"""Issue 14, class 1: a bad model input is a ValueError/TypeError naming it, never an abort.

One explicit case per class of bad input, for the eager model, an Inductor
build (compiled once for the module) and the aot package loaded with
``txdsl.load`` (built once); ``generate``'s arguments; and a fuzz test of
three specs under eager and aot, run in a child process so that a signal
would be seen (``fuzz_boundary.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import txdsl

HERE = Path(__file__).resolve().parent
SPECS = HERE.parents[1] / "specs"
VOCAB, CONTEXT = 50, 16
TINY = ('import "gpt2.tx"\nmodel tiny extends gpt2 { layers = 1; d_model = 32; heads = 2; '
        f'vocab = {VOCAB}; context = {CONTEXT}; drop = 0.0 }}\n')
needs_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="needs a C++ compiler")

IDS = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(0))
ONES = torch.ones_like(IDS)
# (name, inputs, error type, a regex the message must match): one per class of bad input
BAD = [
    ("id past the vocabulary", dict(input_ids=torch.full((2, 3), VOCAB)), ValueError,
     r"input_ids contains 50, but the vocabulary has 50 ids \(0\.\.49\)"),
    ("negative id", dict(input_ids=-IDS - 1), ValueError, r"input_ids contains -\d+; it must be >= 0"),
    ("float ids", dict(input_ids=IDS.float()), TypeError, r"input_ids .*float32"),
    ("ids not a tensor", dict(input_ids=[[1, 2]]), TypeError, r"input_ids must be a torch.Tensor"),
    ("ids of rank 1", dict(input_ids=IDS[0]), ValueError, r"input_ids must have 2 dimensions"),
    ("T = 0", dict(input_ids=IDS[:, :0]), ValueError, r"input_ids .*\(2, 0\).*T = 0"),
    ("batch of 0", dict(input_ids=IDS[:0]), ValueError, r"input_ids .*empty batch"),
    ("longer than the context", dict(input_ids=torch.zeros(1, CONTEXT + 1, dtype=torch.long)),
     ValueError, r"input_ids has 17 tokens per row, but the model's context is 16"),
    ("mask of 2s", dict(input_ids=IDS, attention_mask=2 * ONES), ValueError,
     r"attention_mask contains 2; a mask holds only 0"),
    ("mask shorter than ids", dict(input_ids=IDS, attention_mask=ONES[:, :3]), ValueError,
     r"attention_mask must be \(2, 8\) to match input_ids, got \(2, 3\)"),
    ("mask of another batch", dict(input_ids=IDS, attention_mask=ONES[:1]), ValueError,
     r"attention_mask must be \(2, 8\)"),
    ("position past the table", dict(input_ids=IDS, position_ids=torch.arange(8)[None] + 9),
     ValueError, r"position_ids contains 16, but the position table has 16 rows"),
    ("negative position", dict(input_ids=IDS, position_ids=torch.arange(8)[None] - 1),
     ValueError, r"position_ids contains -1"),
    ("positions of another length", dict(input_ids=IDS, position_ids=torch.arange(7)[None]),
     ValueError, r"position_ids must be \(2, 8\)"),
    ("token types without an embedding", dict(input_ids=IDS, token_type_ids=0 * IDS), ValueError,
     r"token_type_ids given, but the model has no token type embedding"),
    ("document ids of another shape", dict(input_ids=IDS, document_ids=IDS[:, :4]), ValueError,
     r"document_ids must have the shape of input_ids"),
    ("decoder ids for a decoder-only model", dict(input_ids=IDS, decoder_input_ids=IDS),
     ValueError, r"decoder_input_ids is for encoder-decoder models"),
    ("pixel values for a token model", dict(pixel_values=torch.zeros(2, 3, 4, 4)), ValueError,
     r"takes input_ids .*not pixel_values"),
    ("cache_position without a cache", dict(input_ids=IDS, cache_position=torch.arange(8)),
     ValueError, r"cache_position given without past_key_values"),
    ("not a cache", dict(input_ids=IDS, past_key_values=((IDS, IDS),)), TypeError,
     r"past_key_values must be the model's cache"),
]
# the aot package takes only what it was exported with (input_ids, attention_mask)
AOT_ONLY_IDS = {"id past the vocabulary", "negative id", "float ids", "ids not a tensor",
                "ids of rank 1", "T = 0", "batch of 0", "longer than the context",
                "mask of 2s", "mask shorter than ids", "mask of another batch"}


def _refuses(model, inputs, error, match):
    with pytest.raises(error, match=match):
        model(**inputs)


# ---------------------------------------------------------------- eager


@pytest.fixture(scope="module")
def eager():
    return txdsl.build(TINY, base_dir=SPECS, backend="eager", seed=0).module.eval()


@pytest.mark.parametrize("name,inputs,error,match", BAD, ids=[b[0] for b in BAD])
def test_eager_refuses(eager, name, inputs, error, match):
    _refuses(eager, inputs, error, match)


def test_eager_refuses_cache_misuse(eager):
    cache = eager.new_cache(2, 8)
    eager(input_ids=IDS, past_key_values=cache)
    with pytest.raises(ValueError, match=r"past_key_values holds 2 rows, but input_ids has 1"):
        eager(input_ids=IDS[:1, :1], past_key_values=cache)
    with pytest.raises(ValueError, match=r"cache slot 16 \(cache_position\), but the model's "
                                         r"context is 16"):
        eager(input_ids=IDS[:, :1], past_key_values=cache, cache_position=torch.tensor([16]))
    with pytest.raises(ValueError, match=r"cache_position must have one slot per token"):
        eager(input_ids=IDS[:, :2], past_key_values=cache, cache_position=torch.tensor([8]))
    # valid inputs still run, int32 ids and a bool mask included
    out = eager(input_ids=IDS.int(), attention_mask=ONES.bool())
    assert out.logits.shape == (2, 8, VOCAB)


def test_eager_int32_and_int64_agree(eager):
    torch.testing.assert_close(eager(input_ids=IDS.int()).logits, eager(input_ids=IDS).logits)


# ---------------------------------------------------------------- generate


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_ids=IDS[:, :0], max_new_tokens=2), r"non-empty .*\(2, 0\)"),
    (dict(input_ids=IDS, max_new_tokens=9), r"the prompt \(8 tokens\) \+ max_new_tokens \(9\) "
                                            r"= 17 tokens, but the model's context is 16"),
    (dict(input_ids=IDS, max_new_tokens=-1), r"max_new_tokens \(-1\) must be an integer >= 0"),
    (dict(input_ids=IDS, max_new_tokens=2, do_sample=True, top_p=0.0), r"top_p \(0.0\)"),
    (dict(input_ids=IDS, max_new_tokens=2, do_sample=True, top_p=1.5), r"top_p \(1.5\)"),
    (dict(input_ids=IDS, max_new_tokens=2, do_sample=True, top_k=0), r"top_k \(0\)"),
    (dict(input_ids=IDS, max_new_tokens=2, do_sample=True, temperature=0.0),
     r"temperature \(0.0\) must be > 0"),
], ids=["empty prompt", "past the context", "negative count", "top_p 0", "top_p > 1",
        "top_k 0", "temperature 0"])
def test_generate_refuses(eager, kwargs, match):
    with pytest.raises(ValueError, match=match):
        eager.generate(**kwargs)


def test_generate_truncates_at_the_context_when_asked(eager):
    out = eager.generate(IDS, 100, truncate=True)
    assert out.shape == (2, CONTEXT)
    assert torch.equal(out[:, :8], IDS)


# ---------------------------------------------------------------- inductor


@pytest.fixture(scope="module")
def inductor():
    built = txdsl.build(TINY, base_dir=SPECS, backend="inductor", seed=0,
                        options={"fullgraph": True})
    return built


@needs_compiler
def test_inductor_refuses_before_compiled_code(inductor):
    compiled = inductor.lowered
    assert type(compiled).__name__ == "OptimizedModule"
    for name, inputs, error, match in BAD:
        _refuses(compiled, inputs, error, match)
    # the compiled cache can't grow: a slot past its capacity is refused, not written
    cache = inductor.module.new_cache(2, 8)
    compiled(input_ids=IDS, past_key_values=cache)
    with pytest.raises(ValueError, match=r"cache slot 8 .*the cache's capacity is 8"):
        compiled(input_ids=IDS[:, :1], past_key_values=cache)
    with torch.no_grad():
        torch.testing.assert_close(compiled(input_ids=IDS).logits,
                                   inductor.module(input_ids=IDS).logits, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- aot


@pytest.fixture(scope="module")
def aot(tmp_path_factory):
    out = tmp_path_factory.mktemp("aot") / "tiny"
    txdsl.build(TINY, base_dir=SPECS, backend="aot", output=out, seed=0)
    return out


@needs_compiler
def test_aot_package_refuses_with_python_errors(aot, eager):
    model = txdsl.load(aot)
    for name, inputs, error, match in BAD:
        if name in AOT_ONLY_IDS:
            _refuses(model, inputs, error, match)
        else:  # inputs it wasn't exported with are refused by name
            extra = next(k for k in inputs if k != "input_ids")
            with pytest.raises(TypeError, match=rf"takes input_ids.*not {extra}"):
                model(**inputs)
    with pytest.raises(TypeError, match=r"input_ids has dtype torch.int32, but this aot "
                                        r"package was exported for torch.int64"):
        model(input_ids=IDS.int())
    with pytest.raises(TypeError, match=r"keyword inputs only"):
        model(IDS)
    for shape in [(1, 1), (3, CONTEXT)]:  # every length 1..context runs
        ids = torch.randint(0, VOCAB, shape)
        torch.testing.assert_close(model(input_ids=ids).logits, eager(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)
    # A bare model.pt2 (torch alone) still refuses ids outside the vocabulary: the check
    # is in the exported program, and raises instead of aborting.
    bare = torch._inductor.aoti_load_package(str(aot / "model.pt2"))
    with pytest.raises(RuntimeError):  # the bare file takes every input it was exported with
        bare(input_ids=torch.full((1, 2), VOCAB), attention_mask=torch.ones(1, 2, dtype=torch.long))


# ---------------------------------------------------------------- fuzz


FUZZ_CASES = 40


def _fuzz(spec: str, backends: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_boundary.py"), spec, backends, str(FUZZ_CASES), "14",
         str(tmp_path / spec)], capture_output=True, text=True, timeout=600)
    lines = proc.stdout.splitlines()
    last = next((ln for ln in reversed(lines) if ln.startswith("start")), "no case started")
    assert proc.returncode == 0, (f"the child exited with {proc.returncode} (a negative number "
                                  f"is a signal) during: {last}\n{proc.stderr[-3000:]}")
    records = [json.loads(ln) for ln in lines if ln.startswith("{")]
    assert len(records) == len(backends.split(",")) * FUZZ_CASES
    wrong = [r for r in records if r["outcome"] == "wrong"]
    assert not wrong, json.dumps(wrong, indent=1)
    names = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "document_ids",
             "decoder_input_ids", "decoder_attention_mask", "decoder_position_ids",
             "cache_position", "pixel_values", "past_key_values")
    unnamed = [r for r in records if r["outcome"] == "refused"
               and not any(n in r["detail"] for n in names)]
    assert not unnamed, json.dumps(unnamed, indent=1)
    for backend in backends.split(","):  # both kinds of outcome were drawn
        outcomes = {r["outcome"] for r in records if r["backend"] == backend}
        assert outcomes == {"ok", "refused"}, (backend, outcomes)


@needs_compiler
@pytest.mark.parametrize("spec,backends", [("decoder", "eager,aot"), ("encoder", "eager,aot"),
                                           ("encoder_decoder", "eager,aot")])
def test_fuzz_the_boundary(spec, backends, tmp_path):
    """Eager and the aot package (built once in the child), 40 random cases each."""
    _fuzz(spec, backends, tmp_path)
