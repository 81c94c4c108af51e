"""The backend contract (txdsl.backends): lookup, options, outputs, the built-in five."""

from __future__ import annotations

import pytest
import torch

from txdsl.backends import (Backend, BackendError, Outputs, availability, check_available,
                            get_backend, output_tensors, parse_option_strings, parse_options)
from txdsl.plugins import load_registry
from txdsl.sdk.targets import Target

import txdsl_backends

BUILTIN = ["aot", "eager", "inductor", "onnx", "tensorrt"]


@pytest.fixture(scope="module")
def registry():
    return load_registry({"backends": txdsl_backends})


def test_builtin_backends_are_registered_and_follow_the_protocol(registry):
    assert sorted(registry.backends) == BUILTIN
    for backend in registry.backends.values():
        assert isinstance(backend, Backend)
        assert backend.description
        assert backend.options_model.model_config.get("extra") == "forbid"
    assert registry.plugins["backends"].registered == [f"backend:{n}" for n in
                                                       ["eager", "inductor", "aot", "onnx",
                                                        "tensorrt"]]


def test_builtin_backends_come_from_the_entry_point():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="txdsl")}
    assert eps.get("backends") == "txdsl_backends"


def test_unknown_backend_names_the_installed_ones(registry):
    with pytest.raises(BackendError) as err:
        get_backend("indcutor", registry)
    msg = str(err.value)
    assert "unknown backend 'indcutor'" in msg
    assert "did you mean 'inductor'?" in msg
    assert "aot, eager, inductor, onnx, tensorrt" in msg


def test_option_strings_parse_json_values_and_dotted_keys():
    got = parse_option_strings(["mode=max-autotune-no-cudagraphs", "fullgraph=true",
                                "dynamic=None", "options.max_autotune=false", "n=3"])
    assert got == {"mode": "max-autotune-no-cudagraphs", "fullgraph": True, "dynamic": None,
                   "options": {"max_autotune": False}, "n": 3}
    with pytest.raises(ValueError, match="not key=value"):
        parse_option_strings(["mode"])


def test_options_are_validated_by_the_backend_model(registry):
    inductor = get_backend("inductor", registry)
    opts = parse_options(inductor, ["mode=max-autotune-no-cudagraphs", "dynamic=false"])
    assert opts.mode == "max-autotune-no-cudagraphs" and opts.dynamic is False
    assert parse_options(inductor, {"fullgraph": True}).fullgraph is True
    assert parse_options(inductor, None) == inductor.options_model()
    with pytest.raises(BackendError, match=r"mode: Input should be .*its options: .*fullgraph"):
        parse_options(inductor, ["mode=fastest"])
    with pytest.raises(BackendError, match="modee: Extra inputs are not permitted"):
        parse_options(inductor, ["modee=default"])
    with pytest.raises(BackendError, match="either 'mode' or 'options'"):
        parse_options(inductor, ["mode=default", "options.max_autotune=true"])
    with pytest.raises(BackendError, match="eager.*Extra inputs"):
        parse_options(get_backend("eager", registry), ["mode=default"])


def test_output_tensors_reads_dataclasses_dicts_and_tensors(tiny_lm, tiny_inputs):
    out = tiny_lm(**tiny_inputs)
    assert list(output_tensors(out)) == ["logits", "hidden"]
    t = torch.zeros(2)
    assert list(output_tensors(t)) == ["logits"]
    # a tensor reachable twice is returned once, under its top-level name
    nested = {"logits": t, "heads": {"lm": t, "pooler": torch.ones(1)}, "cache": None}
    assert list(output_tensors(nested)) == ["logits", "heads.pooler"]
    o = Outputs(logits=t)
    assert o.logits is t
    with pytest.raises(AttributeError):
        o.missing  # noqa: B018


def test_eager_is_the_module_itself(registry, tiny_lm, tiny_inputs, tmp_path):
    eager = get_backend("eager", registry)
    opts = parse_options(eager, None)
    assert eager.available(Target()) is None
    assert eager.lower(tiny_lm, tiny_inputs, opts) is tiny_lm
    eager.save(tiny_lm, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert eager.load(tmp_path, tiny_lm, opts) is tiny_lm


def test_availability_accepts_backends_whose_available_takes_no_target():
    class Old:
        name = "old"

        def available(self):
            return "needs a flux capacitor"

    assert availability(Old(), Target()) == "needs a flux capacitor"
    with pytest.raises(BackendError, match="backend 'old' can't run here: needs a flux"):
        check_available(Old(), Target())
