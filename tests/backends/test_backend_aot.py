"""``aot`` end to end: torch.export + AOTInductor into a model.pt2 that runs without txdsl.

The zoo's GPT-2, BERT, T5 and ViT shrunk, each exported with every input it takes
(masks with a padded row, token types, decoder inputs, pixels) and compiled once
(tens of seconds on CPU: AOTInductor builds C++), shared by the tests; outputs equal
eager at batches and lengths the export never saw; a second build comes from the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import txdsl
from spec_shrink import shrink_text
from txdsl.back.artifact import check_integrity
from txdsl.back.inputs import example_inputs
from txdsl.backends import output_tensors

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                       reason="AOTInductor's CPU kernels need a C++ compiler"),
]
SPECS = Path(__file__).resolve().parents[2] / "specs"
MODELS = {"gpt2": "gpt2.tx", "bert": "bert.tx", "t5_small": "t5.tx", "vit": "vit.tx"}
SHAPES = ((3, 7), (1, 1), (1, 32), (4, 5))  # (batch, length): none the export's (2, 16)


def _text(name: str) -> str:
    path = SPECS / MODELS[name]
    return shrink_text(path, name, txdsl.parse_file(path, model=name).params)


@pytest.fixture(scope="module", params=list(MODELS))
def built(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("aot") / request.param
    return txdsl.build(_text(request.param), base_dir=SPECS, backend="aot", output=out,
                       progress=False)


def _inputs(built, batch, seq, seed=0):
    return example_inputs(built.ir, built.registry, batch=batch, seq=seq, seed=seed, full=True)


def _eager(built, x):
    with torch.no_grad():
        return output_tensors(built.module(**x))


def test_aot_matches_eager_at_other_batch_sizes_and_lengths(built):
    for batch, seq in SHAPES:
        x = _inputs(built, batch, seq, seed=batch)
        want, got = _eager(built, x), built(**x)
        assert set(got) == set(want) and "last_hidden_state" in got
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_aot_artifact_lists_the_package_and_its_named_axes(built):
    manifest = check_integrity(built.artifact)
    assert manifest.backend == "aot" and manifest.self_contained
    assert set(manifest.files) == {"model.pt2", "weights.safetensors", "spec.tx"}
    assert manifest.backend_options == {"dynamic": True, "strict": False, "inductor_configs": {}}
    axes = {k: v["axes"] for k, v in manifest.inputs.items()}
    assert list(axes) == list(built.example_inputs)
    seq = {"pixel_values": [None, None, None]}
    for name, got in axes.items():
        want = seq.get(name, ["decoder_sequence" if name.startswith("decoder_") else "sequence"])
        assert got == ["batch", *want], name


def test_aot_module_refuses_bad_inputs_and_fills_the_optional_ones(built):
    x = _inputs(built, 2, 6)
    source = next(iter(x))
    with pytest.raises(TypeError, match=rf"this aot package needs {source}"):
        built(**{k: v for k, v in x.items() if k != source})
    with pytest.raises(TypeError, match=r"takes .*\(what it was exported with\), not "
                                        r"position_ids"):
        built(**x, position_ids=torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(TypeError, match=rf"{source} has dtype torch.float16, but this aot "
                                        rf"package was exported for"):
        built(**{**x, source: x[source].to(torch.float16)})
    with pytest.raises(ValueError, match=rf"{source} must have {x[source].ndim} dimensions"):
        built(**{**x, source: x[source][0]})
    with pytest.raises(TypeError, match="keyword inputs only"):
        built.lowered(x[source])
    masks = [k for k in x if k.endswith("attention_mask") or k == "token_type_ids"]
    if masks:  # left out, they default as in the eager call (all ones, all zeros)
        bare = {k: v for k, v in x.items() if k not in masks}
        torch.testing.assert_close(built(**bare)["last_hidden_state"],
                                   _eager(built, bare)["last_hidden_state"],
                                   rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match=r"attention_mask must be \(2, 6\)"):
            built(**{**x, "attention_mask": x["attention_mask"][:, :3]})


def test_rebuilding_an_unchanged_spec_reuses_the_package(built, tmp_path):
    start = time.perf_counter()
    again = txdsl.build(_text(built.ir.name.removesuffix("_tiny")), base_dir=SPECS,
                        backend="aot", output=tmp_path / "again", progress=False)
    assert again.cached and not built.cached and again.cache_key == built.cache_key
    assert time.perf_counter() - start < 30  # no C++ compile (those take minutes here)
    x = _inputs(built, 3, 4, seed=3)
    torch.testing.assert_close(again(**x)["last_hidden_state"],
                               built(**x)["last_hidden_state"], rtol=0, atol=0)
    assert (check_integrity(again.artifact).files["model.pt2"]
            == check_integrity(built.artifact).files["model.pt2"])


def test_model_pt2_runs_with_torch_alone(built, tmp_path):
    """Copied away from the artifact (no spec, weights or manifest), loaded with torch only,
    in a process that can't import txdsl or its plugins."""
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copyfile(built.artifact / "model.pt2", lone / "model.pt2")
    x = _inputs(built, 3, 5, seed=5)
    want = _eager(built, x)
    save_file({**{f"in.{k}": v for k, v in x.items()},
               **{f"out.{k}": v.contiguous() for k, v in want.items()}},
              str(lone / "io.safetensors"))
    script = textwrap.dedent(f"""
        import sys

        class Blocked:  # txdsl and its plugins can't be imported here
            def find_spec(self, name, path=None, target=None):
                if name.startswith("txdsl"):
                    raise ImportError(f"{{name}} is blocked in this process")

        sys.meta_path.insert(0, Blocked())
        import torch
        from safetensors.torch import load_file
        io = load_file({str(lone / 'io.safetensors')!r})
        model = torch._inductor.aoti_load_package({str(lone / 'model.pt2')!r})
        out = model(**{{k[3:]: v for k, v in io.items() if k.startswith("in.")}})
        for k, v in io.items():
            if k.startswith("out."):
                torch.testing.assert_close(out[k[4:]], v, rtol=1e-4, atol=1e-4)
        assert not [m for m in sys.modules if m.startswith("txdsl")], "txdsl was imported"
        print("ok", sorted(out))
    """)
    env = {**os.environ, "TXDSL_PLUGINS": "none"}
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok ") and "last_hidden_state" in proc.stdout


def test_txdsl_load_runs_the_package_without_component_plugins(built, tmp_path):
    if built.ir.name != "gpt2_tiny":
        pytest.skip("one model is enough: the loader is the same for all")
    x = _inputs(built, 2, 9)
    with torch.no_grad():
        want = built.module(**x).logits
    save_file({**x, "want": want.contiguous()}, str(tmp_path / "io.st"))
    script = textwrap.dedent(f"""
        import torch, txdsl
        from safetensors.torch import load_file
        from txdsl.plugins import get_registry
        io = load_file({str(tmp_path / 'io.st')!r})
        want = io.pop("want")
        model = txdsl.load({str(built.artifact)!r})
        out = model(**io)
        torch.testing.assert_close(out.logits, want, rtol=1e-4, atol=1e-4)
        assert sorted(get_registry().plugins) == ["backends"]
        print(type(model).__name__)
    """)
    env = {**os.environ, "TXDSL_PLUGINS": "backends"}  # no attention, norms, ... at all
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("AOTModule")
