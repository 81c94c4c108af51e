"""Every bundled spec builds with ``eager`` and ``inductor``, and they agree.

For each model of ``specs/*.tx`` (``txdsl.parse_all``), a tiny child is written
as spec text (``import "gpt2.tx"`` + ``model gpt2_tiny extends gpt2 { layers = 2;
d_model = 64; ... }``, see :mod:`spec_shrink`) and parsed through the real
language path. Then:

- the shrink changes sizes, not structure (same component kinds and wiring);
- the eager build runs on padded inputs and its forward traces into one graph
  (``torch._dynamo.explain``: no graph break);
- the inductor build (``fullgraph=True``: a graph break fails it) gives the
  eager output within 1e-4.

Models using a kind that is declared but not implemented are skipped with
the error's message. The relative-position families (Transformer-XL, XLNet,
DeBERTa) build; their inductor compiles are marked ``slow`` (one per family:
``deberta_v3_small`` shares ``deberta_v3_small_mlm``'s, so it is not compiled).

One inductor compile per model: ``warmup`` is off so the first (and only)
compile is for the test's own inputs (with attention masks), not the build's
example. Compiled code is cached on disk by Inductor's FX graph cache (on by
default, under ``$TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``),
so a second run is much faster.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
import torch
from spec_shrink import TINY, overrides, shrink_text, structure

import txdsl
from txdsl.backends import output_tensors
from txdsl.errors import SpecError

SPECS = Path(__file__).resolve().parents[2] / "specs"
SPEC_FILES = sorted(SPECS.glob("*.tx"))
NOT_IMPLEMENTED = "has no implementation yet"
TOL = {"rtol": 1e-4, "atol": 1e-4}  # float32
BATCH, SEQ, DECODER_SEQ = 2, 12, 7
PADDED = 4  # the second sequence of the batch ends with this many padding positions


def _models() -> list[tuple[Path, str]]:
    found = [(path, ir.name) for path in SPEC_FILES for ir in txdsl.parse_all(path)]
    names = [name for _, name in found]
    assert len(set(names)) == len(names), f"model names repeat across specs: {names}"
    return found


MODELS = _models()
IDS = [name for _, name in MODELS]

needs_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="inductor's CPU kernels need a C++ compiler")


# ------------------------------------------------------------------ shrinking


@functools.cache
def full_ir(path: Path, name: str) -> txdsl.ModelIR:
    return txdsl.parse_file(path, model=name)


@functools.cache
def tiny_text(path: Path, name: str) -> str:
    return shrink_text(path, name, full_ir(path, name).params)


@functools.cache
def tiny_ir(path: Path, name: str) -> txdsl.ModelIR:
    return txdsl.parse(tiny_text(path, name), base_dir=SPECS)


@pytest.mark.parametrize("path,name", MODELS, ids=IDS)
def test_shrunk_model_keeps_the_structure(path, name):
    from txdsl.front.estimate import estimate
    from txdsl.plugins import get_registry

    full, tiny = full_ir(path, name), tiny_ir(path, name)
    text = tiny_text(path, name)
    assert f"extends {name} {{" in text and "layers = 2" in text
    assert tiny.name == f"{name}_tiny"
    for key, value in overrides(full.params).items():
        assert tiny.params[key] == value, key
    for stack in tiny.stacks:
        assert len(stack.layers) == TINY["layers"]
    assert tiny.d_model == TINY["d_model"]
    assert structure(tiny) == structure(full)
    reg = get_registry()
    assert estimate(tiny, reg).params < min(estimate(full, reg).params, 2_000_000)


# ------------------------------------------------------------------ inputs


def make_inputs(ir: txdsl.ModelIR) -> dict[str, torch.Tensor]:
    """Batch 2, the second sequence right-padded; pixels for image models; decoder inputs
    (also padded) for encoder-decoders; segment ids where the model has token types."""
    g = torch.Generator().manual_seed(1)
    emb, kw = ir.embedding, {}

    def tokens(seq: int, padded: int, prefix: str = "") -> None:
        position = emb.position.args if emb.position is not None else {}
        pad = position.get("padding_idx") or 0
        ids = torch.randint(2, emb.tokens, (BATCH, seq), generator=g)  # no pad id inside
        mask = torch.ones(BATCH, seq, dtype=torch.long)
        mask[1, seq - padded:] = 0
        kw[f"{prefix}input_ids"] = ids.masked_fill(mask == 0, pad)
        kw[f"{prefix}attention_mask"] = mask

    if emb.patches is not None:
        a = emb.patches.args
        kw["pixel_values"] = torch.randn(BATCH, a.get("channels", 3), a["image"], a["image"],
                                         generator=g)
    elif getattr(emb, "features", None) is not None:  # continuous inputs, the second padded
        kw["features"] = torch.randn(BATCH, SEQ, emb.features, generator=g)
        kw["attention_mask"] = torch.ones(BATCH, SEQ, dtype=torch.long)
        kw["attention_mask"][1, SEQ - PADDED:] = 0
    else:
        tokens(SEQ, PADDED)
        if emb.token_types >= 2:
            kw["token_type_ids"] = (torch.arange(SEQ) >= SEQ // 2).long().expand(BATCH, -1)
    if ir.is_encoder_decoder:
        tokens(DECODER_SEQ, 2, prefix="decoder_")
    return kw


def outputs(out) -> dict[str, torch.Tensor]:
    tensors = dict(output_tensors(out))
    assert tensors, "the model returned no tensors"
    return tensors


# ------------------------------------------------------------------ eager


@functools.cache
def eager(path: Path, name: str):
    """The eager build, or the reason it can't be built yet (a declared-only kind)."""
    try:
        return txdsl.build(tiny_ir(path, name), backend="eager", seed=0, progress=False)
    except SpecError as err:
        if NOT_IMPLEMENTED not in err.message:
            raise
        return f"{name}: {err.message}"


def eager_or_skip(path: Path, name: str):
    built = eager(path, name)
    if isinstance(built, str):
        pytest.skip(built)
    return built


@functools.cache
def eager_outputs(path: Path, name: str) -> dict[str, torch.Tensor]:
    built = eager_or_skip(path, name)
    with torch.no_grad():
        return outputs(built(**make_inputs(built.ir)))


@pytest.mark.parametrize("path,name", MODELS, ids=IDS)
def test_eager_build_runs(path, name):
    built = eager_or_skip(path, name)
    assert built.backend == "eager" and built.lowered is built.module
    ir, got = built.ir, eager_outputs(path, name)
    x = make_inputs(ir)
    if "pixel_values" in x:
        a = ir.embedding.patches.args
        T = (a["image"] // a["size"]) ** 2 + int(ir.embedding.cls_token)
    else:
        T = DECODER_SEQ if ir.is_encoder_decoder else SEQ
    assert got["last_hidden_state"].shape == (BATCH, T, ir.d_model)
    if any(h.head.kind in ("lm", "mlm") for h in ir.heads):
        assert got["logits"].shape == (BATCH, T, TINY["vocab"])
    for key, tensor in got.items():
        assert torch.isfinite(tensor).all(), key


@pytest.mark.parametrize("path,name", MODELS, ids=IDS)
def test_eager_forward_has_no_graph_breaks(path, name):
    built = eager_or_skip(path, name)
    try:
        with torch.no_grad():
            explained = torch._dynamo.explain(built.module)(**make_inputs(built.ir))
    finally:
        torch._dynamo.reset()
    reasons = [str(r) for r in explained.break_reasons]
    assert explained.graph_break_count == 0 and not reasons, "\n".join(reasons)
    assert explained.graph_count == 1


# ------------------------------------------------------------------ inductor


def _picks(plan) -> list[tuple[str, str, str]]:
    return [(c.family, c.kind, c.impl) for c in plan.choices]


SLOW_INDUCTOR = {"transformer_xl", "xlnet", "deberta_v3_small_mlm"}  # one per family
SHARED_INDUCTOR = {"deberta_v3_small"}  # the same family and layers as deberta_v3_small_mlm
INDUCTOR_MODELS = [pytest.param(path, name, id=name,
                                marks=[pytest.mark.slow] if name in SLOW_INDUCTOR else [])
                   for path, name in MODELS if name not in SHARED_INDUCTOR]


@needs_compiler
@pytest.mark.parametrize("path,name", INDUCTOR_MODELS)
def test_inductor_matches_eager(path, name):
    want_built = eager_or_skip(path, name)
    want = eager_outputs(path, name)
    torch._dynamo.reset()  # TxModel.forward is one code object for every model: no recompile limit
    try:
        built = txdsl.build(tiny_ir(path, name), backend="inductor", seed=0, progress=False,
                            options={"fullgraph": True, "warmup": False})
        assert built.backend == "inductor"
        assert _picks(built.plan) == _picks(want_built.plan)  # the same kernels as eager
        same = built.module.state_dict()
        for key, value in want_built.module.state_dict().items():
            assert torch.equal(same[key], value), f"seed 0 gave other weights: {key}"
        with torch.no_grad():
            got = outputs(built(**make_inputs(built.ir)))  # the one compile (fullgraph)
    finally:
        torch._dynamo.reset()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], **TOL, msg=lambda m, k=key: f"{k}: {m}")
