"""``txdsl show`` names each decoder layer's decode state by what its kind keeps (the real
executable): a KV cache (grows with the length), a ring buffer of the window's slots, a
recurrent state; an encoder-only model has none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def show(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "txdsl", "show", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_labels_in_the_table_and_json():
    r = show("specs/gpt2_local.tx")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "decode state" in x)
    assert "KV cache (layers 0,4,8)" in line and "ring buffer of 129 slots" in line
    r = show("specs/linear_transformer.tx", "--json")
    assert json.loads(r.stdout)["decode_states"] == {"recurrent state": [0, 1, 2, 3, 4, 5]}


def test_encoder_only_has_no_decode_state():
    from txdsl.cli.show_cmd import _states_text

    assert _states_text({}) == "none (no decoder)"
    assert _states_text({"KV cache": [0, 1]}) == "KV cache"
