"""The catalogue of kinds and the hint an unknown kind gets."""

from __future__ import annotations

import pytest

import txdsl
from txdsl import SpecError
from txdsl.catalogue import CATALOGUE, declared_hint, entry, unknown_kind_hint
from txdsl.registry import FAMILIES

SURVEY_ATTENTION = ("local dilated strided block global random sparse lsh routing linear "
                    "performer probsparse clustered compressed linformer inducing nystrom "
                    "synthesizer talking_heads collaborative adaptive_span").split()


def test_catalogue_covers_the_survey_and_every_builtin_kind(registry):
    assert set(CATALOGUE) == set(FAMILIES)
    assert all(entry("attention", k) for k in SURVEY_ATTENTION)
    assert entry("position", "shaw") and entry("position", "cope") and entry("ffn", "moe")
    for family in FAMILIES:
        missing = set(registry.kinds(family)) - set(CATALOGUE[family])
        assert not missing, f"built-in {family} kinds missing from the catalogue: {missing}"
    for kinds in CATALOGUE.values():
        for kind, e in kinds.items():
            assert kind.isidentifier() and e.summary and e.paper


def test_hint_in_catalogue_not_installed():
    hint = unknown_kind_hint("attention", "performer", ["full"])
    assert hint.startswith("'performer' is in txdsl's catalogue (FAVOR+ positive random "
                           "features; Choromanski et al. 2021, Performer) but no installed "
                           "plugin provides it yet")
    assert 'README, "Writing a plugin"' in hint and hint.endswith("installed: full")


def test_hint_typo_of_installed_points_to_describe():
    hint = unknown_kind_hint("norm", "rmsnrom", ["layernorm", "rmsnorm"])
    assert hint == ("did you mean 'rmsnorm'? (installed: layernorm, rmsnorm; "
                    "`txdsl describe rmsnorm` shows its arguments)")


def test_hint_typo_of_a_catalogue_kind():
    hint = unknown_kind_hint("attention", "perfomer", ["full"])
    assert hint == ("did you mean 'performer'? (in txdsl's catalogue, not installed yet; "
                    "installed: full)")


def test_hint_other_family_and_new_kind():
    assert unknown_kind_hint("norm", "rope", ["layernorm"], ["position"]).startswith(
        "'rope' is a position kind, not a norm one (`txdsl describe rope`)")
    hint = unknown_kind_hint("ffn", "kan", ["mlp"])
    assert "'kan' is not in txdsl's catalogue either" in hint and "plugin" in hint


@pytest.mark.parametrize("family, kind, says", [
    ("attention", "mqa", "`full(heads: heads, kv_heads: 1)`"),
    ("attention", "gqa", "`full(heads: heads, kv_heads: N)`"),
    ("attention", "flash_attention", "that is a kernel, not a kind"),
    ("attention", "sliding_window", "`local(heads: heads, window: W)`"),
    ("ffn", "feedforward", "`mlp(hidden: 4 * d_model)`"),
    ("norm", "rms_norm", "did you mean 'rmsnorm'?"),
])
def test_hint_names_the_kind_another_library_calls_so(family, kind, says):
    hint = unknown_kind_hint(family, kind, ["full", "local", "mlp", "rmsnorm"])
    assert says in hint and "installed: " in hint


def test_a_choice_another_library_names_differently():
    spec = ("model m { d_model = 64; embedding { tokens = 10 }\n"
            "decoder(1) { attention = full(heads: 4); ffn = mlp(hidden: 8, act: swish) } }")
    with pytest.raises(SpecError) as info:
        txdsl.parse(spec)
    assert info.value.hint.startswith("'swish' is called 'silu' here (choices: ")


def test_declared_hint_names_the_plugin():
    hint = declared_hint("attention", "relative_xl", "attention")
    assert hint.startswith("plugin 'attention' declares its arguments and sizes")
    assert "`txdsl describe relative_xl`" in hint


@pytest.mark.parametrize("kind, message", [
    ("synthesizer", "attention 'synthesizer' is not installed"),
    ("linfomer", "unknown attention 'linfomer'"),
    ("rope", "unknown attention 'rope'"),
])
def test_resolution_uses_the_catalogue(kind, message):
    spec = ("model m { d_model = 64; embedding { tokens = 10 }\n"
            f"decoder(1) {{ attention = {kind}(heads: 4); ffn = none }} }}")
    with pytest.raises(SpecError) as info:
        txdsl.parse(spec)
    assert info.value.message == message


def test_building_a_declared_kind_says_why_and_what_to_do(planned_registry):
    from txdsl.back.select import select

    registry = planned_registry
    ir = txdsl.parse("model m { d_model = 32\n vocab = 10\n embedding { tokens = vocab }\n"
                     "decoder(2) { attention = planned(heads: 4)\n ffn = mlp(hidden: 64) } }",
                     registry=registry)
    with pytest.raises(SpecError) as info:
        select(ir, registry=registry)
    assert "has no implementation yet (declared by plugin" in info.value.message
    assert "declares its arguments and sizes, so specs using it check and show" in info.value.hint
    assert 'README, "Writing a plugin"' in info.value.hint
