"""Checkpoints that don't fit are refused with one error naming every key; a pickle is never
read; an architecture without a mapping is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

import txdsl
from hf_models import make
from txdsl.interop import MappingError



def txdsl_cli(*argv: str) -> int:
    """The CLI in this process (a subprocess would import torch again: seconds each)."""
    from txdsl.cli.main import main

    return main(list(argv))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """GPT-2 with an untied head, saved; each test edits a copy."""
    d = tmp_path_factory.mktemp("gpt2")
    hf, _ = make("gpt2", 1)
    hf.save_pretrained(d)
    return d


def edited(saved: Path, tmp_path: Path, edit) -> Path:
    tensors = load_file(str(saved / "model.safetensors"))
    edit(tensors)
    (tmp_path / "config.json").write_text((saved / "config.json").read_text())
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    return tmp_path


def refused(directory: Path) -> str:
    with pytest.raises(MappingError) as err:
        txdsl.from_hf(str(directory))
    return str(err.value)


def test_missing_and_unexpected_keys_in_one_error(saved, tmp_path):
    def edit(t):
        del t["transformer.h.1.ln_2.weight"]
        t["transformer.h.7.mlp.c_fc.weight"] = t["transformer.h.0.mlp.c_fc.weight"].clone()
    message = refused(edited(saved, tmp_path, edit))
    assert "missing keys: transformer.h.1.ln_2.weight" in message
    assert "unexpected keys: transformer.h.7.mlp.c_fc.weight" in message


def test_missing_untied_lm_head_is_refused(saved, tmp_path):
    message = refused(edited(saved, tmp_path, lambda t: t.pop("lm_head.weight")))
    assert "missing keys: lm_head.weight" in message  # never silently left random


def test_shape_mismatch_names_the_key(saved, tmp_path):
    def edit(t):
        t["transformer.wpe.weight"] = t["transformer.wpe.weight"][:10].clone()
    message = refused(edited(saved, tmp_path, edit))
    assert "shape mismatch: embedding.position.embed.weight: checkpoint [10, 40], model [40, 40]" \
        in message


def test_a_pickle_is_refused_unread(saved, tmp_path):
    (tmp_path / "config.json").write_text((saved / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not even a pickle")  # never opened
    message = refused(tmp_path)
    assert "pytorch_model.bin" in message and "never loads" in message
    assert "save_pretrained(dir, safe_serialization=True)" in message


def test_an_unsupported_architecture_is_named(saved, tmp_path):
    config = json.loads((saved / "config.json").read_text())
    config["architectures"] = ["GPT2ForTokenClassification"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    message = refused(tmp_path)
    assert "GPT2ForTokenClassification is not supported" in message and "GPT2LMHeadModel" in message


def test_cli_import_build_export(saved, tmp_path, capsys):
    spec, weights = tmp_path / "m" / "model.tx", tmp_path / "m" / "weights.safetensors"
    assert txdsl_cli("import-hf", str(saved), "-o", str(spec)) == 0
    assert spec.read_text().startswith('import "zoo:gpt2.tx"') and weights.is_file()
    assert txdsl_cli("build", str(spec), "--weights", str(weights), "-o",
                     str(tmp_path / "art")) == 0
    assert txdsl_cli("export-hf", str(spec), "--weights", str(weights), "-o",
                     str(tmp_path / "hf")) == 0
    assert "GPT2LMHeadModel" in capsys.readouterr().out
    ours, theirs = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(
        str(saved / "model.safetensors"))
    assert set(ours) == set(theirs) and all((ours[k] == theirs[k]).all() for k in ours)


def test_cli_refusal_is_an_error_line_not_a_traceback(saved, tmp_path, capsys):
    (tmp_path / "config.json").write_text((saved / "config.json").read_text())
    assert txdsl_cli("import-hf", str(tmp_path), "-o", str(tmp_path / "m.tx")) == 1
    err = capsys.readouterr().err
    assert err.startswith("txdsl: error: ") and "Traceback" not in err
    assert "no *.safetensors weights" in err and not (tmp_path / "m.tx").exists()
