"""``inductor``: torch.compile with options from the command line's key=value form."""

from __future__ import annotations

import shutil

import pytest
import torch

from txdsl.backends import parse_options
from txdsl.sdk.targets import Target

from txdsl_backends.inductor import InductorBackend

needs_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="inductor's CPU kernels need a C++ compiler")


@needs_compiler
def test_inductor_compiles_and_matches_eager(tiny_lm, tiny_inputs):
    backend = InductorBackend()
    assert backend.available(Target(backend="inductor")) is None
    compiled = backend.lower(tiny_lm, tiny_inputs, parse_options(backend, ["fullgraph=true"]))
    with torch.no_grad():
        got, want = compiled(**tiny_inputs), tiny_lm(**tiny_inputs)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)


def test_inductor_passes_options_to_torch_compile(monkeypatch, tiny_lm, tiny_inputs):
    seen = {}

    def fake_compile(module, **kwargs):
        seen.update(kwargs)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    backend = InductorBackend()
    opts = parse_options(backend, ["mode=max-autotune-no-cudagraphs", "dynamic=true",
                                   "fullgraph=true", "warmup=false"])
    assert backend.lower(tiny_lm, tiny_inputs, opts) is tiny_lm
    assert seen == {"backend": "inductor", "fullgraph": True, "dynamic": True,
                    "mode": "max-autotune-no-cudagraphs", "options": None}
    seen.clear()
    opts = parse_options(backend, ["options.max_autotune=true", "warmup=false"])
    backend.lower(tiny_lm, tiny_inputs, opts)
    assert seen["options"] == {"max_autotune": True} and seen["mode"] is None


def test_inductor_without_a_compiler_says_so(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "needs a C++ compiler" in InductorBackend().available(Target(backend="inductor"))


@needs_compiler
@pytest.mark.slow
def test_each_build_compiles_on_its_own_code_object(tiny_spec):
    """torch.compile keeps graphs per code object with a recompile limit (8): every build of
    a process used to share TxModel.forward's, so the ninth graph ran eagerly (a benchmark
    grid did). With the limit at 1, a second build still compiles its own graph."""
    import txdsl
    from torch._dynamo.utils import counters

    builds = [txdsl.build(tiny_spec, backend="inductor", options={"warmup": False},
                          progress=False) for _ in range(2)]
    a, b = builds[0].module, builds[1].module
    assert a.forward.__code__ is not b.forward.__code__
    assert a.forward.__code__ is not type(a).forward.__code__
    ids = torch.randint(0, 10, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch._dynamo.config.patch(recompile_limit=1), torch.no_grad():
        before = counters["stats"]["unique_graphs"]
        for built in builds:
            torch.testing.assert_close(built(input_ids=ids).logits,
                                       built.module(input_ids=ids).logits)
        assert counters["stats"]["unique_graphs"] - before == 2
