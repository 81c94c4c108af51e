"""Every hook is documented, and every component hook feeds a registry family."""

from __future__ import annotations

import inspect

from txdsl import hookspecs
from txdsl.registry import HOOK_FAMILIES

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
         if hasattr(fn, "txdsl_spec")]


def test_there_are_hooks():
    assert "register_attention" in HOOKS and "register_backends" in HOOKS


def test_every_hook_has_a_docstring_and_takes_register():
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__.strip()) > 40, name
        assert list(inspect.signature(fn).parameters) == ["register"], name


def test_every_component_hook_has_a_family():
    assert set(HOOKS) - {"register_backends", "register_hf_mappings"} == set(HOOK_FAMILIES)


def test_hf_mapping_hook_feeds_the_interop_registry():
    from txdsl.interop.registry import load_families

    families = load_families()
    assert {"gpt2", "bert", "llama"} <= set(families)
    assert all(f.model_type == name for name, f in families.items())
