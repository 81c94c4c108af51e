"""``txdsl verify`` for position schemes (txdsl/sdk/testing_positions.py): the real
command passes shaw, cope and rope, ``--json`` reports the position family, an unknown
kind gets a did-you-mean, and deliberately broken schemes FAIL the check meant to
catch them (and only that one), so the suite is shown to catch something."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from txdsl.cli.main import main
from txdsl.sdk.testing import run_checks, subjects
from txdsl_positions import AlibiPositions, RotaryPositions, ShawArgs

ROOT = Path(__file__).resolve().parents[2]
CHECKS = {"output_shapes", "translation_invariance", "cached_decoding", "padding",
          "parameter_count", "reductions"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "txdsl", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_verify_shaw_cope_rope_passes():
    r = run("verify", "shaw", "cope", "rope")
    assert r.returncode == 0, r.stdout + r.stderr
    for kind in ("shaw", "cope", "rope"):
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith(f"position {kind}[")]
        assert {ln.split()[2] for ln in lines} == CHECKS, lines
    assert " 0 failed" in r.stdout and "Traceback" not in r.stderr


def test_verify_json_and_an_unknown_kind(capsys):
    assert main(["verify", "alibi", "learned", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(o["family"], o["kind"]) for o in rows} == {("position", "alibi"),
                                                         ("position", "learned")}
    assert all(o["ok"] for o in rows)
    skipped = {(o["kind"], o["check"]): o["skipped"] for o in rows if o["skipped"]}
    assert "absolute" in skipped[("learned", "translation_invariance")]
    assert ("alibi", "translation_invariance") not in skipped  # ran, and passed
    assert main(["verify", "shw"]) == 2
    assert "did you mean 'shaw'?" in capsys.readouterr().err


def _subject(kind: str, **change):
    return dataclasses.replace(subjects(family="position", kinds=[kind])[0], impl="broken",
                               **change)


def _failed(subject) -> set[str]:
    outcomes = run_checks([subject])
    assert {o.check for o in outcomes} == CHECKS
    return {o.check for o in outcomes if not o.ok}


class QuadraticRope(RotaryPositions):
    """Rotates by position squared: q_m . k_n no longer depends on m - n alone."""

    def cos_sin(self, positions, dtype):
        return super().cos_sin(positions * positions, dtype)


class RestartingAlibi(AlibiPositions):
    """Ignores the positions it is given and counts from 0 in every call (so a decoding
    step sees its keys at the wrong distances)."""

    def bias(self, q_positions, k_positions):
        T, S = q_positions.shape[-1], k_positions.shape[-1]
        return super().bias(torch.arange(T)[None], torch.arange(S)[None])


class ForgetfulShaw(ShawArgs):
    """Counts one layer's tables though every layer has its own."""

    def param_count(self, dims):
        return super().param_count(dims.model_copy(update={"layers": 1}))


@pytest.mark.parametrize("kind,change,caught", [
    # (reductions too: dynamic scaling, factor 1, reads squared positions past the context)
    ("rope", {"build": QuadraticRope.from_args}, {"translation_invariance", "reductions"}),
    ("alibi", {"build": RestartingAlibi.from_args}, {"cached_decoding"}),
    ("shaw", {"args": ForgetfulShaw()}, {"parameter_count"}),
], ids=["rope-not-relative", "alibi-restarts-in-the-cache", "shaw-param-count"])
def test_a_broken_scheme_fails_the_suite(kind, change, caught):
    assert _failed(_subject(kind)) == set()  # the real scheme passes ...
    assert _failed(_subject(kind, **change)) == caught  # ... its broken twin fails


def test_a_bfloat16_model_with_sinusoidal_positions_runs():
    """The suite found this: the float32 sinusoidal table was added to bfloat16 embeddings
    uncast, and the first LayerNorm refused the float32 input (txdsl/runtime/embedding.py)."""
    from txdsl.sdk.testing_positions import output_shapes

    output_shapes(subjects(family="position", kinds=["sinusoidal"])[0])
