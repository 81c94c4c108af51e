"""``txdsl verify`` (the contract suite as the CLI runs it) passes for the content-based
sparse kinds (issue 8), persistent memory and ``moe`` (issue 11), which no other test ran
through the CLI. The linearized, low-rank and priors kinds have their own verify tests
(tests/plugins/linear, lowrank, priors); the position-based sparse kinds run the same
suite in tests/plugins/test_attention_contract.py (their verify takes ~45 s in all)."""

from __future__ import annotations

from txdsl.cli.main import main

KINDS = ["lsh", "routing", "topk", "persistent", "moe"]


def test_verify_passes(capsys):
    assert main(["verify", *KINDS]) == 0
    out = capsys.readouterr().out
    for kind in KINDS:
        assert f" {kind}[reference]" in out, kind
    assert " 0 failed" in out
