"""Independent mistakes are all reported, across merge, resolution and validation,
and an error is never reported again as the consequence of another."""

from __future__ import annotations

import pytest

import txdsl
from txdsl import SpecError


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        txdsl.parse(text)
    return [e.message for e in info.value.errors]


def model(embedding: str = "tokens = 100", decoder: str = "", d_model: str = "64") -> str:
    body = decoder or "norm = layernorm(); attention = full(heads: 4); ffn = mlp(hidden: 256)"
    return (f"model m {{\n  d_model = {d_model}\n  embedding {{ {embedding} }}\n"
            f"  decoder(2) {{ {body} }}\n  head = lm(tied: true)\n}}\n")


def test_unknown_field_does_not_hide_an_unknown_kind():
    found = errors(model(decoder="norm = layrnorm(); attention = full(heads: 4); "
                                 "feedforward = mlp(hidden: 256)"))
    assert found == ["unknown norm 'layrnorm'", "unknown field 'feedforward' in decoder"]
    # not also "decoder layer 0 has no ffn": that follows from the unknown field


def test_argument_error_does_not_hide_a_misplaced_position():
    found = errors(model(embedding="tokens = 100; position = rope()",
                         decoder="norm = layernorm(eps: -1.0); attention = full(heads: 4); "
                                 "ffn = mlp(hidden: 256)"))
    assert found[0] == ("position 'rope' transforms queries and keys, so it can't be added to "
                        "the embeddings")
    assert found[1].startswith("bad value for argument 'eps' of norm 'layernorm'")
    assert len(found) == 2


def test_validation_runs_beside_a_failed_attention():
    found = errors(model(decoder="norm = layernorm(); attention = ful(heads: 4); "
                                 "ffn = mlp(hidden: 256); final_norm = rmsnorm(eps: 0)"))
    assert found == ["unknown attention 'ful'",
                     "bad value for argument 'eps' of norm 'rmsnorm': input should be greater "
                     "than 0"]


def test_bad_layer_statement_keeps_the_good_ones_of_its_block():
    found = errors(model(decoder="norm = layernorm(); attention = full(heads: 4); "
                                 "ffn = mlp(hidden: 256); layer[0] { ffn = none; atention = "
                                 "full(heads: 5) }; layer[1] { norm = rmsnorm(eps: -1) }"))
    assert found[0] == "unknown field 'atention' in layer[...]"
    assert found[1].startswith("bad value for argument 'eps' of norm 'rmsnorm'")
    assert len(found) == 2


def test_a_failed_d_model_skips_validation_instead_of_inventing_errors():
    # d_model falls back to 1 internally; "d_model (1) is not divisible by heads (4)" would
    # be a consequence, not a mistake of the spec.
    assert errors(model(d_model="nope")) == ["undefined name 'nope'"]


def test_a_missing_field_is_still_reported_when_nothing_was_dropped():
    found = errors(model(decoder="norm = layernorm(); attention = full(heads: 4)"))
    assert found == ["decoder layer 0 has no ffn", "decoder layer 1 has no ffn"]
