"""Golden error messages: every ``tests/errors/*.tx`` with its expected ``.err`` output.

Each case runs ``txdsl check NAME.tx`` from ``tests/errors/`` and compares
stderr with ``NAME.err``. Regenerate after an intended wording change with
``UPDATE_GOLDEN=1 pytest tests/test_errors.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from txdsl.cli import main
from txdsl.plugins import get_registry

HERE = Path(__file__).parent / "errors"
CASES = sorted(p.stem for p in HERE.glob("*.tx"))
BUILTIN = "attention,norms,positions,ffn,heads,embeddings,backends"


@pytest.fixture(autouse=True)
def builtin_plugins_only(monkeypatch):
    """Hints list installed kinds: keep them independent of other installed plugins."""
    monkeypatch.setenv("TXDSL_PLUGINS", BUILTIN)
    get_registry.cache_clear()
    yield
    get_registry.cache_clear()


@pytest.mark.parametrize("name", CASES)
def test_golden(name, capsys, monkeypatch):
    monkeypatch.chdir(HERE)
    status = main(["check", f"{name}.tx"])
    out, err = capsys.readouterr()
    assert status == 1, f"{name}.tx should fail to check"
    assert out == ""
    expected = HERE / f"{name}.err"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected.write_text(err)
    assert err == expected.read_text()
    assert "Traceback" not in err
    # The first line is always path:line:col: error: message (or path: error: for whole files).
    assert err.startswith(f"{name}.tx:") or err.startswith("import_cycle_")


def test_every_golden_case_has_an_expectation():
    assert {p.stem for p in HERE.glob("*.err")} == set(CASES)
