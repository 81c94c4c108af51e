"""``txdsl.build`` and ``txdsl build``: stages, refusals, weights, seeds, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from txdsl.back.artifact import WeightsError, read_manifest, save_weights
from txdsl.backends import BackendError, BuildError



TINY = """\
model tiny {
  vocab = 97
  d_model = 32
  n_heads = 4
  layers = 2
  context = 8

  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }

  decoder(layers) {
    norm = layernorm(eps: 1e-5)
    attention = full(heads: n_heads)
    ffn = mlp(hidden: 64, act: gelu)
    final_norm = layernorm(eps: 1e-5)
  }

  head = lm(tied: true)
}
"""

ENC_DEC = """\
model tiny_t5 {
  vocab = 64
  d_model = 32
  n_heads = 4
  layers = 1
  embedding { tokens = vocab }
  encoder(layers) {
    norm = rmsnorm(eps: 1e-6)
    position = t5_bias(buckets: 8, max_distance: 16, bidirectional: true)
    attention = full(heads: n_heads, bias: false, scale: 1.0)
    ffn = mlp(hidden: 64, act: relu, bias: false)
    final_norm = rmsnorm(eps: 1e-6)
  }
  decoder(layers) {
    norm = rmsnorm(eps: 1e-6)
    position = t5_bias(buckets: 8, max_distance: 16, bidirectional: false)
    attention = full(heads: n_heads, bias: false, scale: 1.0)
    cross_attention = full(heads: n_heads, bias: false, scale: 1.0)
    ffn = mlp(hidden: 64, act: relu, bias: false)
    final_norm = rmsnorm(eps: 1e-6)
  }
  head = lm(tied: true)
}
"""

VIT = """\
model tiny_vit {
  d_model = 32
  n_heads = 4
  layers = 1
  embedding {
    patches = conv(size: 8, channels: 3, image: 32)
    cls_token = true
    position = learned(max_len: 17)
  }
  encoder(layers) {
    norm = layernorm(eps: 1e-12)
    attention = full(heads: n_heads)
    ffn = mlp(hidden: 64, act: gelu)
    final_norm = layernorm(eps: 1e-12)
  }
  head = classifier(classes: 10, pool: first)
}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.tx"
    path.write_text(TINY)
    return path


def _build(*args, **kwargs):
    import txdsl

    kwargs.setdefault("progress", False)
    return txdsl.build(*args, **kwargs)


# ---------------------------------------------------------------- the API


def test_build_runs_every_stage_in_order(spec, tmp_path):
    from txdsl.runtime import TxModel

    stages = []
    built = _build(spec, output=tmp_path / "out", progress=stages.append)
    assert stages == ["parse", "select", "construct", "lower", "write"]
    assert list(built.timings) == stages
    assert isinstance(built.module, TxModel) and built.lowered is built.module
    assert built.ir.name == "tiny" and built.module.ir == built.ir
    assert built.plan.impl_for("attention", "full") == "sdpa"
    assert built.artifact == (tmp_path / "out").absolute()
    out = built(**built.example())
    assert out.logits.shape == (1, 8, 97)  # input length min(16, context = 8)


def test_spec_may_be_a_path_text_or_an_ir(spec, tmp_path):
    import txdsl

    ir = txdsl.parse_file(spec)
    from_text = _build(TINY, output=tmp_path / "text")
    from_ir = _build(ir, output=tmp_path / "ir")
    from_path = _build(str(spec))
    assert from_text.ir == from_ir.ir == from_path.ir == ir
    x = from_text.example(batch=2)
    torch.testing.assert_close(from_text(**x).logits, from_ir(**x).logits)  # same seed
    assert read_manifest(tmp_path / "text").spec.format == "tx"
    assert "model tiny" in (tmp_path / "text" / "spec.tx").read_text()
    assert read_manifest(tmp_path / "ir").spec.format == "ir-json"
    assert json.loads((tmp_path / "ir" / "spec.tx").read_text())["name"] == "tiny"


def test_seed_decides_the_initial_weights(spec):
    a, b, c = _build(spec, seed=1), _build(spec, seed=1), _build(spec, seed=2)
    wa, wb, wc = (m.module.embedding.tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    state = torch.random.get_rng_state()
    _build(spec, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched


def test_weights_are_loaded_from_safetensors(spec, tmp_path):
    a = _build(spec, seed=1)
    path = tmp_path / "w.safetensors"
    save_weights(a.module, path)
    b = _build(spec, seed=2, weights=path, output=tmp_path / "out")
    x = a.example(batch=2)
    torch.testing.assert_close(b(**x).logits, a(**x).logits)
    m = read_manifest(tmp_path / "out")
    assert m.weights.source == str(path) and len(m.weights.source_sha256) == 64


def test_weights_of_another_model_are_refused(spec, tmp_path):
    other = _build(TINY.replace("vocab = 97", "vocab = 98").replace("hidden: 64", "hidden: 48"))
    path = tmp_path / "other.safetensors"
    save_weights(other.module, path)
    with pytest.raises(WeightsError) as err:
        _build(spec, weights=path, output=tmp_path / "out")
    msg = str(err.value)
    assert str(path) in msg and "shape mismatch" in msg
    assert "embedding.tokens.weight: file [98, 32], model [97, 32]" in msg
    assert "ffn.up.weight: file [48, 32], model [64, 32]" in msg or "file [48, 32]" in msg
    assert not (tmp_path / "out").exists()
    with pytest.raises(WeightsError, match="no such weights file"):
        _build(spec, weights=tmp_path / "missing.safetensors")


def test_force_kernels(spec):
    from txdsl_attention import ReferenceAttention

    built = _build(spec, force_kernels={"attention": "reference"})
    assert built.plan.impl_for("attention", "full") == "reference"
    assert isinstance(built.module.decoder.layers[0].attention, ReferenceAttention)
    with pytest.raises(BuildError, match="unknown family 'atention'"):
        _build(spec, force_kernels={"atention": "reference"})


def test_refusals_come_before_any_work(spec):
    stages = []
    with pytest.raises(BackendError, match=r"unknown backend 'eagre'; did you mean 'eager'\?"):
        _build(spec, backend="eagre", progress=stages.append)
    with pytest.raises(BackendError, match="backend 'inductor' options: mode"):
        _build(spec, backend="inductor", options=["mode=warp-speed"], progress=stages.append)
    with pytest.raises(BuildError, match="unknown dtype 'float8'"):
        _build(spec, dtype="float8", progress=stages.append)
    with pytest.raises(BuildError, match=r"unknown device 'tpu' \(use cpu or cuda\)"):
        _build(spec, device="tpu", progress=stages.append)
    with pytest.raises(BuildError, match="device 'meta' is not supported"):
        _build(spec, device="meta", progress=stages.append)
    assert stages == []


def test_bfloat16(spec, tmp_path):
    built = _build(spec, dtype="bfloat16", output=tmp_path / "bf16")
    assert {p.dtype for p in built.module.parameters()} == {torch.bfloat16}
    assert built(**built.example()).logits.dtype == torch.bfloat16
    assert read_manifest(tmp_path / "bf16").dtype == "bfloat16"
    import txdsl

    loaded = txdsl.load(tmp_path / "bf16")
    assert next(loaded.parameters()).dtype == torch.bfloat16


def test_output_may_depend_on_the_model_name(spec, tmp_path):
    built = _build(spec, output=lambda ir: tmp_path / "artifacts" / ir.name)
    assert built.artifact == (tmp_path / "artifacts" / "tiny").absolute()


def test_example_inputs_match_the_model_kind(registry):
    from txdsl.back.inputs import example_inputs

    t5 = _build(ENC_DEC)
    x = t5.example()
    assert set(x) == {"input_ids", "decoder_input_ids"} and x["input_ids"].shape == (1, 16)
    assert t5(**x).logits.shape == (1, 16, 64)
    vit = _build(VIT)
    x = example_inputs(vit.ir, registry, batch=2)
    assert set(x) == {"pixel_values"} and x["pixel_values"].shape == (2, 3, 32, 32)
    assert vit(**x).logits.shape == (2, 10)


def test_txdsl_build_is_the_function(spec):
    import txdsl
    import txdsl.back.builder  # noqa: F401  (the module has its own name)

    assert callable(txdsl.build)
    assert txdsl.build(spec, progress=False).ir.name == "tiny"
    assert txdsl.load.__module__ == "txdsl.back.load"


def test_load_with_another_backend(spec, tmp_path):
    import txdsl
    from txdsl.back.load import load_artifact

    built = _build(spec, output=tmp_path / "a")
    art = load_artifact(tmp_path / "a", backend="inductor", options={"warmup": False})
    assert art.backend == "inductor" and art.model is not None
    assert type(art.module).__name__ == "OptimizedModule"
    assert txdsl.load(tmp_path / "a", backend="eager").ir == built.ir


# ---------------------------------------------------------------- the CLI


def _cli(*argv):
    from txdsl.cli import main

    return main(list(argv))


def test_cli_build_prints_plan_output_and_artifact(spec, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _cli("build", str(spec)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "built tiny for eager (cpu, float32)"
    assert "  attention full -> sdpa (plugin attention)" in out
    assert "  norm layernorm -> reference (plugin norms)" in out
    assert "ran on input_ids (2, 8) int64" in out
    assert "output: logits (2, 8, 97) float32" in out
    assert out[-1] == "artifact: artifacts/tiny"
    assert read_manifest(tmp_path / "artifacts" / "tiny").model == "tiny"


def test_cli_build_explain_kernel_option_no_run(spec, tmp_path, capsys):
    out_dir = tmp_path / "o"
    assert _cli("build", str(spec), "-o", str(out_dir), "--explain", "--no-run",
                "--kernel", "attention=reference", "--backend", "inductor",
                "--option", "mode=max-autotune-no-cudagraphs", "--option", "warmup=false",
                "--seed", "5") == 0
    out = capsys.readouterr().out
    assert "kernel plan for device=cpu dtype=float32 backend=inductor" in out
    assert "forced by 'attention'" in out and "- sdpa" in out
    assert "output:" not in out
    m = read_manifest(out_dir)
    assert m.backend == "inductor" and m.seed == 5
    assert m.backend_options["mode"] == "max-autotune-no-cudagraphs"
    assert m.plan["choices"][2]["impl"] == "reference"


@pytest.mark.parametrize("argv, status, message", [
    (["--kernel", "attention"], 2, "is not FAMILY[.KIND]=IMPL"),
    (["--kernel", "atention=reference"], 2, "unknown family 'atention'"),
    (["--backend", "eagre"], 2, "unknown backend 'eagre'; did you mean 'eager'?"),
    (["--option", "mode"], 2, "is not key=value"),
    (["--backend", "inductor", "--option", "modee=default"], 2, "Extra inputs are not permitted"),
    (["--kernel", "attention=flash"], 1, "has no implementation 'flash'"),
    (["--weights", "nope.safetensors"], 1, "nope.safetensors: no such weights file"),
])
def test_cli_build_errors(spec, tmp_path, monkeypatch, capsys, argv, status, message):
    monkeypatch.chdir(tmp_path)
    assert _cli("build", str(spec), *argv) == status
    assert message in capsys.readouterr().err
    assert not (tmp_path / "artifacts").exists()


def test_cli_build_spec_error_and_usage(tmp_path, capsys):
    bad = tmp_path / "bad.tx"
    bad.write_text(TINY.replace("full(heads: n_heads)", "fulll(heads: n_heads)"))
    assert _cli("build", str(bad)) == 1
    err = capsys.readouterr().err
    assert f"{bad}:15:" in err and "fulll" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        _cli("build", str(bad), "--dtype", "float8")
    assert exit_.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cli_build_tensorrt_refused_without_cuda(spec, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _cli("build", str(spec), "--backend", "tensorrt") == 1
    err = capsys.readouterr().err
    assert "backend 'tensorrt' can't run here: needs CUDA" in err
    assert _cli("build", str(spec), "--device", "cuda") == 1
    assert "needs CUDA" in capsys.readouterr().err
    assert not (tmp_path / "artifacts").exists()


def test_a_model_too_big_for_memory_is_refused_before_allocating():
    import txdsl
    from txdsl.backends import BuildError

    spec = ('import "llama.tx"\nmodel huge extends llama { d_model = 16384; heads = 128; '
            'kv_heads = 8; layers = 126; d_ff = 53248; vocab = 128256 }')
    with pytest.raises(BuildError, match=r"huge needs 1511\.9 GiB for its weights in float32"):
        txdsl.build(spec, base_dir=Path(__file__).resolve().parents[2] / "specs",
                    progress=False)
