"""``onnx`` end to end: the zoo's GPT-2, BERT, T5 and ViT shrunk, exported with every input
they take, run by onnxruntime, and equal to eager at batches and lengths the export never saw.

One export per model (module fixtures); the file also runs in a fresh process that can
import neither txdsl nor torch (onnxruntime and numpy only).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import txdsl
from spec_shrink import shrink_text
from txdsl.back.artifact import read_manifest
from txdsl.back.inputs import example_inputs
from txdsl.backends import input_axes, output_tensors

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow
SPECS = Path(__file__).resolve().parents[2] / "specs"
MODELS = {"gpt2": "gpt2.tx", "bert": "bert.tx", "t5_small": "t5.tx", "vit": "vit.tx"}
SHAPES = ((3, 7), (1, 5), (4, 32))  # (batch, length): none of them the export's (2, 16)


@pytest.fixture(scope="module", params=list(MODELS))
def built(request, tmp_path_factory):
    name = request.param
    path = SPECS / MODELS[name]
    ir = txdsl.parse_file(path, model=name)
    out = tmp_path_factory.mktemp("onnx") / name
    return txdsl.build(shrink_text(path, name, ir.params), base_dir=SPECS, backend="onnx",
                       output=out, progress=False, cache=False)


def _inputs(built, batch, seq, seed=0):
    return example_inputs(built.ir, built.registry, batch=batch, seq=seq, seed=seed, full=True)


def _eager(built, x):
    with torch.no_grad():
        return output_tensors(built.module(**x))


def test_onnx_matches_eager_at_other_batches_and_lengths(built):
    for batch, seq in SHAPES:
        x = _inputs(built, batch, seq, seed=batch)
        want, got = _eager(built, x), built(**x)
        assert set(got) == set(want) and "last_hidden_state" in got
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_a_padded_row_matters_and_is_served(built):
    """The mask is a real input: padding the last row changes its outputs, as in eager."""
    if "attention_mask" not in built.example_inputs:
        pytest.skip("an image model takes no mask")
    x = _inputs(built, 2, 9)
    full = {**x, "attention_mask": torch.ones_like(x["attention_mask"])}
    padded, unpadded = built(**x), built(**full)
    name = "last_hidden_state"
    assert not torch.allclose(padded[name][1], unpadded[name][1], atol=1e-4)
    torch.testing.assert_close(padded[name], _eager(built, x)[name], rtol=1e-4, atol=1e-4)


def test_the_file_names_its_inputs_outputs_and_axes(built):
    import onnx

    graph = onnx.load(str(built.artifact / "model.onnx")).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in graph.input}
    assert list(inputs) == list(built.example_inputs)
    for name, dims in inputs.items():
        x = built.example_inputs[name]
        axes = input_axes(name, x.ndim, x.is_floating_point())
        assert dims == [a or n for a, n in zip(axes, x.shape)], name
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
               for o in graph.output}
    assert "logits" in outputs and outputs["last_hidden_state"][0] == "batch"
    manifest = read_manifest(built.artifact)
    assert {k: v["axes"] for k, v in manifest.inputs.items()} == {
        k: [a if isinstance(a, str) else None for a in dims] for k, dims in inputs.items()}


def test_onnxruntime_runs_the_file_without_txdsl_or_torch(built, tmp_path):
    x = _inputs(built, 3, 6, seed=7)
    want = _eager(built, x)
    np.savez(tmp_path / "io.npz", **{f"in.{k}": v.numpy() for k, v in x.items()},
             **{f"out.{k}": v.numpy() for k, v in want.items()})
    script = textwrap.dedent(f"""
        import sys

        class Blocked:  # neither txdsl, its plugins nor torch can be imported here
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch" or name.startswith("txdsl"):
                    raise ImportError(f"{{name}} is blocked in this process")

        sys.meta_path.insert(0, Blocked())
        import numpy as np
        import onnxruntime

        io = np.load({str(tmp_path / 'io.npz')!r})
        session = onnxruntime.InferenceSession({str(built.artifact / 'model.onnx')!r},
                                               providers=["CPUExecutionProvider"])
        feed = {{i.name: io["in." + i.name] for i in session.get_inputs()}}
        names = [o.name for o in session.get_outputs()]
        for name, got in zip(names, session.run(names, feed)):
            np.testing.assert_allclose(got, io["out." + name], rtol=1e-4, atol=1e-4)
        assert not [m for m in sys.modules if m.startswith(("txdsl", "torch"))]
        print("ok", sorted(feed), names)
    """)
    env = {**os.environ, "TXDSL_PLUGINS": "none"}
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok ")
    assert "logits" in proc.stdout


def test_the_loaded_file_refuses_bad_inputs(built):
    model = txdsl.load(built.artifact)
    assert type(model).__name__ == "OnnxModule"
    x = _inputs(built, 2, 5)
    source = next(iter(x))
    torch.testing.assert_close(model(**x)["last_hidden_state"],
                               _eager(built, x)["last_hidden_state"], rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError, match=rf"this onnx model needs {source} \(it takes"):
        model(**{k: v for k, v in x.items() if k != source})
    with pytest.raises(TypeError, match=r"this onnx model takes .*not position_ids"):
        model(**x, position_ids=torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(TypeError, match=rf"{source} has dtype torch.float16, but this onnx "
                                        rf"model was exported for"):
        model(**{**x, source: x[source].to(torch.float16)})
    with pytest.raises(ValueError, match=rf"{source} must have {x[source].ndim} dimensions"):
        model(**{**x, source: x[source][0]})
    with pytest.raises(TypeError, match="keyword inputs only"):
        model(x[source])
