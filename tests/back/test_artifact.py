"""Artifact directories: atomic writes, hashes checked on load, tied weights, no pickle."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from txdsl.back.artifact import (ArtifactError, MANIFEST, WeightsError, load_weights, read_manifest,
                            save_weights, check_integrity as verify)

SPEC = """\
# a tiny GPT: tied head, learned positions
model tiny {
  vocab = 97
  d_model = 32
  n_heads = 4
  layers = 2
  context = 32

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




class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight
        self.norm = nn.LayerNorm(4)


# ---------------------------------------------------------------- weights


def test_tied_weights_round_trip_and_stay_tied(tmp_path):
    torch.manual_seed(0)
    a, b = Tied(), Tied()
    path = tmp_path / "w.safetensors"
    assert save_weights(a, path) == 3  # emb/head once, norm weight and bias
    load_weights(b, path)
    assert b.head.weight is b.emb.weight
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=n)


def test_tied_weights_load_from_either_name(tmp_path):
    a = Tied()
    path = tmp_path / "w.safetensors"
    save_file({"head.weight": a.emb.weight.detach(), "norm.weight": a.norm.weight.detach(),
               "norm.bias": a.norm.bias.detach()}, str(path))
    b = Tied()
    load_weights(b, path)
    torch.testing.assert_close(b.emb.weight, a.emb.weight)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("norm.bias"), "missing keys: norm.bias"),
    (lambda sd: sd.pop("emb.weight"), "missing keys: emb.weight = head.weight"),
    (lambda sd: sd.update(extra=torch.zeros(1)), "unexpected keys: extra"),
    (lambda sd: sd.update({"norm.weight": torch.zeros(5)}),
     "shape mismatch: norm.weight: file [5], model [4]"),
])
def test_weights_that_dont_fit_are_refused_by_name(tmp_path, change, message):
    a = Tied()
    sd = {"emb.weight": a.emb.weight.detach().clone(), "norm.weight": a.norm.weight.detach(),
          "norm.bias": a.norm.bias.detach()}
    change(sd)
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    b = Tied()
    before = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_weights(b, path)
    assert str(path) in str(err.value) and message in str(err.value)
    for k, v in b.state_dict().items():  # nothing was loaded
        assert torch.equal(v, before[k])


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x80\x04 this is a pickle, or junk")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_weights(Tied(), path)
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(Tied(), tmp_path / "nope.safetensors")


# ---------------------------------------------------------------- artifacts


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    import txdsl

    spec = tmp_path_factory.mktemp("spec") / "tiny.tx"
    spec.write_text(SPEC)
    out = tmp_path_factory.mktemp("art") / "tiny"
    built = txdsl.build(spec, output=out, seed=3, progress=False)
    return built, out


@pytest.fixture
def copy(artifact, tmp_path):
    """A private copy of the artifact, to tamper with."""
    dst = tmp_path / "copy"
    shutil.copytree(artifact[1], dst)
    return dst


def test_artifact_files_and_manifest(artifact):
    import txdsl

    built, out = artifact
    assert built.artifact == out.absolute()
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "spec.tx", "weights.safetensors"]
    m = verify(out)
    raw = json.loads((out / MANIFEST).read_text())
    assert raw["format"] == "txdsl-artifact" and raw["format_version"] == 2
    assert m.model == "tiny" and m.backend == "eager" and m.backend_options == {}
    assert m.ir == built.ir.model_dump(mode="json") and m.ir_hash == built.ir.hash()
    assert m.plan == built.plan.model_dump(mode="json")
    assert [(c["family"], c["kind"], c["impl"]) for c in m.plan["choices"]][:2] == [
        ("position", "learned", "reference"), ("norm", "layernorm", "reference")]
    assert (m.dtype, m.device, m.seed) == ("float32", "cpu", 3)
    assert m.versions.txdsl == txdsl.__version__ and m.versions.torch == torch.__version__
    assert m.versions.python.count(".") == 2
    assert {"attention", "backends", "norms"} <= set(m.versions.plugins)
    assert set(m.files) == {"spec.tx", "weights.safetensors"}
    assert m.weights.sha256 == m.files["weights.safetensors"]
    assert m.weights.parameters == sum(p.numel() for p in built.module.parameters())
    assert m.spec.format == "tx" and m.spec.source.endswith("tiny.tx")
    assert "model tiny" in (out / "spec.tx").read_text()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_load_rebuilds_the_same_model_with_tied_weights(artifact):
    import txdsl

    built, out = artifact
    model = txdsl.load(out)
    x = built.example(batch=2)
    with torch.no_grad():
        torch.testing.assert_close(model(**x).logits, built.module(**x).logits)
    # the tied head still shares the token embedding: one tensor, not two
    names = {n for n, _ in model.named_parameters()}
    assert len(names) == len(list(built.module.parameters()))
    assert set(model.state_dict()) == set(built.module.state_dict())


def test_loading_never_unpickles(artifact, monkeypatch):
    import txdsl

    def refuse(*a, **k):
        raise AssertionError("unpickling during load")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    txdsl.load(artifact[1])


def test_altered_weights_are_refused_by_name(copy):
    import txdsl

    w = copy / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"weights\.safetensors: sha256 mismatch"):
        txdsl.load(copy)


def test_missing_file_is_refused_by_name(copy):
    (copy / "spec.tx").unlink()
    with pytest.raises(ArtifactError, match=r"spec\.tx: missing \(listed in manifest.json\)"):
        verify(copy)


def test_altered_ir_is_refused(copy):
    raw = json.loads((copy / MANIFEST).read_text())
    raw["ir"]["d_model"] = 64
    (copy / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="manifest.json: IR hash mismatch"):
        verify(copy)


def test_bad_manifests_are_refused(copy, tmp_path):
    with pytest.raises(ArtifactError, match="no such artifact directory"):
        read_manifest(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="manifest.json: missing"):
        read_manifest(tmp_path / "empty")
    raw = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**raw, "format_version": 99}))
    with pytest.raises(ArtifactError, match="format version 99 is newer"):
        read_manifest(copy)
    (copy / MANIFEST).write_text(json.dumps({**raw, "surprise": 1}))
    with pytest.raises(ArtifactError, match="invalid manifest: surprise"):
        read_manifest(copy)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(copy)


# ---------------------------------------------------------------- atomic writes


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("stage", ["weights", "backend"])
def test_a_failed_write_keeps_the_old_artifact(copy, monkeypatch, stage):
    import txdsl
    import txdsl.back.artifact as art
    from txdsl.plugins import get_registry

    before = (copy / MANIFEST).read_text()

    def boom(*a, **k):
        raise KeyboardInterrupt("interrupted while writing")

    if stage == "weights":
        monkeypatch.setattr(art, "save_weights", boom)
    else:
        monkeypatch.setattr(get_registry().backends["eager"], "save", boom)
    with pytest.raises(KeyboardInterrupt):
        txdsl.build(SPEC, output=copy, seed=4, progress=False)
    assert (copy / MANIFEST).read_text() == before
    verify(copy)
    assert _leftovers(copy.parent) == []


def test_a_failed_build_leaves_no_artifact(tmp_path, monkeypatch):
    import txdsl
    from txdsl.plugins import get_registry

    def boom(*a, **k):
        raise RuntimeError("the lowering broke")

    monkeypatch.setattr(get_registry().backends["eager"], "lower", boom)
    with pytest.raises(txdsl.back.builder.BackendError, match="backend 'eager' failed to lower tiny: "
                                                       "RuntimeError: the lowering broke"):
        txdsl.build(SPEC, output=tmp_path / "art", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_rebuilding_replaces_an_artifact_only_when_complete(copy):
    import txdsl

    old = verify(copy)
    txdsl.build(SPEC, output=copy, seed=5, progress=False)
    new = verify(copy)
    assert (old.seed, new.seed) == (3, 5)
    assert old.files["weights.safetensors"] != new.files["weights.safetensors"]
    assert _leftovers(copy.parent) == []


def test_a_non_artifact_directory_is_never_replaced(tmp_path):
    import txdsl

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    stages = []
    with pytest.raises(ArtifactError, match="refusing to replace a non-empty directory"):
        txdsl.build(SPEC, output=precious, progress=stages.append)
    assert stages == [] and (precious / "thesis.tex").read_text() == "years of work"
