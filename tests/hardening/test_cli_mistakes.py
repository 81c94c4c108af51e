"""Class 7: mistakes on the command line are errors, not silently ignored or defaulted.

A misspelt ``--kernel`` kind, an uninstalled plugin in ``TXDSL_PLUGINS``,
``show --batch -1`` / ``--seq-len 0``; ``fmt --write`` keeps a file's
permissions and writes through a symlink; importing a file that isn't a
``.tx`` spec never prints its content.
"""

from __future__ import annotations

import os
import stat

import pytest

import txdsl
from hardening_helpers import cli, clean_env, tiny_spec, write_spec
from txdsl.back.builder import BuildError
from txdsl.errors import SpecError


def test_a_misspelt_kernel_kind_is_a_usage_error(tmp_path):
    spec = write_spec(tmp_path)
    r = cli("build", str(spec), "-o", str(tmp_path / "out"), "--no-run",
            "--kernel", "attention.ful=reference")
    assert r.returncode == 2, r.stderr
    assert "unknown attention 'ful'; did you mean 'full'?" in r.stderr
    assert not (tmp_path / "out").exists()


def test_the_api_refuses_a_misspelt_kernel_kind_too():
    with pytest.raises(BuildError, match="unknown norm 'layrnorm'; did you mean 'layernorm'"):
        txdsl.build(tiny_spec(), force_kernels={"norm.layrnorm": "reference"}, progress=False)


def test_an_uninstalled_plugin_in_txdsl_plugins_is_reported(tmp_path):
    spec = write_spec(tmp_path)
    r = cli("build", str(spec), "--no-run", "-o", str(tmp_path / "out"),
            env=clean_env(TXDSL_PLUGINS="nonexistent,norms"))
    assert r.returncode == 2, r.stderr
    assert "TXDSL_PLUGINS names 'nonexistent'" in r.stderr
    assert "installed: attention, backends, embeddings, ffn, heads, hf, norms, positions" in r.stderr


def test_txdsl_plugins_lists_the_unknown_name_as_broken():
    r = cli("plugins", "--json", env=clean_env(TXDSL_PLUGINS="norms,bakends"))
    assert r.returncode == 0
    import json

    by_name = {p["name"]: p for p in json.loads(r.stdout)["plugins"]}
    assert by_name["bakends"]["ok"] is False
    assert "did you mean 'backends'?" in by_name["bakends"]["error"]
    assert by_name["norms"]["ok"] is True


def test_fmt_write_keeps_the_mode_and_writes_through_a_symlink(tmp_path):
    messy = tiny_spec().replace("vocab = 32; d_model = 16", "vocab=32 ;d_model=16")
    plain = tmp_path / "plain.tx"
    plain.write_text(messy)
    os.chmod(plain, 0o664)
    real = tmp_path / "real"
    real.mkdir()
    (real / "target.tx").write_text(messy)
    os.chmod(real / "target.tx", 0o640)
    link = tmp_path / "link.tx"
    link.symlink_to(real / "target.tx")

    r = cli("fmt", "--write", str(plain), str(link))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(plain.stat().st_mode) == 0o664
    assert plain.read_text() != messy and "vocab = 32" in plain.read_text()
    assert link.is_symlink() and os.readlink(link) == str(real / "target.tx")
    assert (real / "target.tx").read_text() == plain.read_text()
    assert stat.S_IMODE((real / "target.tx").stat().st_mode) == 0o640
    assert sorted(p.name for p in real.iterdir()) == ["target.tx"]  # no temporary left


@pytest.mark.parametrize("args", [["--batch", "-1"], ["--seq-len", "0"]])
def test_show_refuses_non_positive_sizes(tmp_path, args):
    spec = write_spec(tmp_path)
    r = cli("show", str(spec), *args)
    assert r.returncode == 2, r.stderr
    assert f"argument {args[0]}: must be at least 1" in r.stderr


def test_importing_a_non_spec_file_never_prints_it(tmp_path):
    secret = tmp_path / "secret.conf"
    secret.write_text("root:x:0:0:the secret first line\n")
    spec = tmp_path / "m.tx"
    spec.write_text(f'import "{secret}"\n' + tiny_spec())
    r = cli("check", str(spec))
    assert r.returncode == 1
    assert "not a .tx spec file" in r.stderr and "m.tx:1:1" in r.stderr
    assert "secret first line" not in r.stderr + r.stdout


def test_a_tx_symlink_to_another_file_is_not_imported(tmp_path):
    secret = tmp_path / "secret.conf"
    secret.write_text("root:x:0:0:the secret first line\n")
    (tmp_path / "evil.tx").symlink_to(secret)
    with pytest.raises(SpecError) as info:
        txdsl.parse('import "evil.tx"\n' + tiny_spec(), tmp_path)
    assert "not a .tx spec file" in info.value.message
    assert "secret first line" not in info.value.render()
