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
