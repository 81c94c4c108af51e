"""``aot``: torch.export + AOTInductor into a model.pt2 that runs without txdsl.

One compile (tens of seconds on CPU: AOTInductor builds C++) shared by the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                       reason="AOTInductor's CPU kernels need a C++ compiler"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import txdsl

    from backend_fixtures import TINY_SPEC

    out = tmp_path_factory.mktemp("aot") / "tiny"
    return txdsl.build(TINY_SPEC, backend="aot", output=out, progress=False)


def test_aot_matches_eager_at_other_batch_sizes_and_lengths(built):
    from txdsl.back.inputs import example_inputs

    for batch, seq in ((2, 16), (1, 16), (3, 5)):
        x = example_inputs(built.ir, built.registry, batch=batch, seq=seq, seed=batch)
        with torch.no_grad():
            want = built.module(**x).logits
        got = built(**x)
        assert set(got) == {"logits", "last_hidden_state"}
        torch.testing.assert_close(got.logits, want, rtol=1e-4, atol=1e-4)


def test_aot_artifact_lists_the_package(built):
    from txdsl.back.artifact import check_integrity

    manifest = check_integrity(built.artifact)
    assert manifest.backend == "aot" and manifest.self_contained
    assert set(manifest.files) == {"model.pt2", "weights.safetensors", "spec.tx"}
    assert manifest.backend_options == {"dynamic": True, "strict": False, "inductor_configs": {}}
    assert manifest.inputs == {"input_ids": {"shape": [2, 16], "dtype": "int64"}}


def test_model_pt2_runs_with_torch_alone(built, tmp_path):
    """Copied away from the artifact (no spec, weights or manifest), loaded with torch only."""
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copyfile(built.artifact / "model.pt2", lone / "model.pt2")
    x = built.example(batch=1)
    with torch.no_grad():
        want = built.module(**x).logits
    save_file({"input_ids": x["input_ids"], "want": want.contiguous()},
              str(lone / "io.safetensors"))
    script = textwrap.dedent(f"""
        import sys, torch
        from safetensors.torch import load_file
        io = load_file({str(lone / 'io.safetensors')!r})
        model = torch._inductor.aoti_load_package({str(lone / 'model.pt2')!r})
        out = model(input_ids=io["input_ids"])
        torch.testing.assert_close(out["logits"], io["want"], rtol=1e-4, atol=1e-4)
        assert not [m for m in sys.modules if m.startswith("txdsl")], "txdsl was imported"
        print("ok")
    """)
    env = {**os.environ, "TXDSL_PLUGINS": "none"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_txdsl_load_runs_the_package_without_component_plugins(built, tmp_path):
    x = built.example(batch=1)
    with torch.no_grad():
        want = built.module(**x).logits
    save_file({"input_ids": x["input_ids"], "want": want.contiguous()}, str(tmp_path / "io.st"))
    script = textwrap.dedent(f"""
        import torch, txdsl
        from safetensors.torch import load_file
        from txdsl.plugins import get_registry
        io = load_file({str(tmp_path / 'io.st')!r})
        model = txdsl.load({str(built.artifact)!r})
        out = model(input_ids=io["input_ids"])
        torch.testing.assert_close(out.logits, io["want"], rtol=1e-4, atol=1e-4)
        assert sorted(get_registry().plugins) == ["backends"]
        print(type(model).__name__)
    """)
    env = {**os.environ, "TXDSL_PLUGINS": "backends"}  # no attention, norms, ... at all
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("AOTModule")
