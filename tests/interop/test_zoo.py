"""The zoo from anywhere: ``import "zoo:NAME.tx"`` finds the bundled specs from any directory."""

from __future__ import annotations

import pytest

import txdsl
from txdsl.front.loader import zoo_dir, zoo_names

THREE_LINES = """import "zoo:llama.tx"

model mine extends llama { layers = 4; d_model = 256 }
"""


def test_a_variant_in_three_lines_from_a_directory_outside_the_repository(tmp_path,
                                                                          monkeypatch, capsys):
    from txdsl.cli.main import main

    (tmp_path / "mine.tx").write_text(THREE_LINES)
    monkeypatch.chdir(tmp_path)
    ir = txdsl.parse_file("mine.tx")
    assert (ir.name, ir.d_model, len(ir.decoder.layers)) == ("mine", 256, 4)
    assert ir.decoder.layers[0].attention.args["kv_heads"] == 4  # the rest is llama's
    assert main(["check", "mine.tx"]) == 0
    assert main(["show", "mine.tx"]) == 0
    assert "mine" in capsys.readouterr().out


def test_every_bundled_spec_imports_from_the_zoo(tmp_path):
    assert {"gpt2.tx", "llama.tx", "t5.tx", "bert.tx", "vit.tx"} <= set(zoo_names())
    for name in ("gpt2.tx", "roberta.tx", "t5.tx", "vit.tx"):  # roberta imports bert itself
        parent = txdsl.parse_all(str(zoo_dir() / name))[-1].name
        probe = tmp_path / f"probe_{name}"
        probe.write_text(f'import "zoo:{name}"\nmodel probe extends {parent} {{ layers = 1 }}\n')
        ir = txdsl.parse_file(str(probe))
        assert ir.name == "probe"


def test_an_unknown_zoo_spec_is_a_located_error(tmp_path):
    (tmp_path / "bad.tx").write_text('import "zoo:lama.tx"\n\nmodel m extends llama { }\n')
    with pytest.raises(txdsl.SpecError) as err:
        txdsl.parse_file(str(tmp_path / "bad.tx"))
    text = err.value.render()
    assert "bad.tx:1:1" in text and "the zoo has no spec 'lama.tx'" in text
    assert "did you mean 'llama.tx'" in text


def test_zoo_paths_cannot_escape_the_zoo(tmp_path):
    (tmp_path / "bad.tx").write_text('import "zoo:../tests/errors/empty.tx"\n')
    with pytest.raises(txdsl.SpecError, match="the zoo has no spec"):
        txdsl.parse_file(str(tmp_path / "bad.tx"))
