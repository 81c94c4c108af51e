"""``onnx`` and ``tensorrt``: refused up front, with the reason, where they can't run."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from txdsl.backends import BackendError, BuildError
from txdsl.sdk.targets import Target

from txdsl_backends.onnx import OnnxBackend
from txdsl_backends.tensorrt import TensorRTBackend

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript"))
HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(HAS_ONNX, reason="onnx and onnxscript are installed")
def test_onnx_names_the_missing_packages():
    reason = OnnxBackend().available(Target(backend="onnx"))
    assert reason is not None
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    for m in missing:
        assert f"'{m}'" in reason
    assert "pip install 'txdsl[onnx]'" in reason


@pytest.mark.skipif(not HAS_ONNX, reason="needs the onnx and onnxscript packages")
def test_onnx_exports_a_model_file(tiny_lm, tiny_inputs, tmp_path):
    backend = OnnxBackend()
    lowered = backend.lower(tiny_lm, tiny_inputs, backend.options_model())
    backend.save(lowered, tmp_path)
    assert (tmp_path / "model.onnx").is_file()
    if importlib.util.find_spec("onnxruntime") is not None:
        got = backend.load(tmp_path, None, backend.options_model())(**tiny_inputs)
        torch.testing.assert_close(got.logits, tiny_lm(**tiny_inputs).logits,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal on a machine without CUDA")
def test_tensorrt_is_refused_without_cuda():
    reason = TensorRTBackend().available(Target(device="cpu", backend="tensorrt"))
    assert "needs CUDA: torch.cuda.is_available() is False" in reason
    if importlib.util.find_spec("torch_tensorrt") is None:
        assert "needs the 'torch_tensorrt' package" in reason


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal on a machine without CUDA")
def test_build_refuses_tensorrt_before_doing_any_work(tiny_spec, tmp_path):
    import txdsl

    stages = []
    out = tmp_path / "out"
    with pytest.raises(BackendError) as err:
        txdsl.build(tiny_spec, backend="tensorrt", output=out, progress=stages.append)
    assert str(err.value).startswith("backend 'tensorrt' can't run here: needs CUDA")
    assert stages == [] and not out.exists()


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal on a machine without CUDA")
def test_build_refuses_device_cuda_without_cuda(tiny_spec):
    import txdsl

    stages = []
    with pytest.raises(BuildError, match=r"device 'cuda' needs CUDA, but torch.cuda."
                                         r"is_available\(\) is False"):
        txdsl.build(tiny_spec, device="cuda", progress=stages.append)
    assert stages == []


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is None,
                    reason="needs the torch_tensorrt package")
def test_tensorrt_matches_eager_on_cuda(tiny_lm, tiny_inputs):
    backend = TensorRTBackend()
    assert backend.available(Target(device="cuda", backend="tensorrt")) is None
    module = tiny_lm.cuda()
    inputs = {k: v.cuda() for k, v in tiny_inputs.items()}
    lowered = backend.lower(module, inputs, backend.options_model())
    got = lowered(**inputs)
    logits = got.logits if hasattr(got, "logits") else got["logits"]
    torch.testing.assert_close(logits, module(**inputs).logits, rtol=1e-3, atol=1e-3)
