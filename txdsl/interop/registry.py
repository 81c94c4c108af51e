"""The HF families installed plugins register through ``register_hf_mappings``.

Loaded from the same entry points (group ``txdsl``) as every other plugin,
``TXDSL_PLUGINS`` included; a plugin that fails to load is skipped here as it
is by the component registry (``txdsl plugins`` reports it there).
"""

from __future__ import annotations

import functools
import importlib
import logging
from types import ModuleType
from typing import Any

import pluggy

from .. import hookspecs
from .family import HFFamily

log = logging.getLogger("txdsl.interop")
BUILTIN = "txdsl_hf"  # the built-in families' plugin module


def load_families(modules: dict[str, ModuleType | Any] | None = None) -> dict[str, HFFamily]:
    """``model_type`` -> family, from the installed plugins (or ``modules``, for tests)."""
    from ..plugins import _entry_points, _env_list

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if modules is None:
        wanted = _env_list("TXDSL_PLUGINS")  # as the component registry: only these
        eps = [ep for ep in _entry_points() if wanted is None or ep.name in wanted]
        for ep in eps:
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # reported by `txdsl plugins`; not our business here
                log.debug("txdsl plugin %r not loaded: %s", ep.name, exc)
        # stale metadata (an old txdsl.egg-info on the path lacks the "hf" entry point):
        # the built-in families still load
        if not any(ep.value == BUILTIN for ep in eps) and (wanted is None or "hf" in wanted):
            pm.register(importlib.import_module(BUILTIN), name="hf")
    else:
        for name, module in modules.items():
            pm.register(module, name=name)
    families: dict[str, HFFamily] = {}
    for impl in pm.hook.register_hf_mappings.get_hookimpls():
        def register(family: HFFamily, _plugin: str = impl.plugin_name) -> None:
            if not isinstance(family, HFFamily):
                raise TypeError(f"plugin {_plugin!r} registered {family!r}, not an HFFamily")
            if family.model_type in families:
                log.warning("txdsl plugin %r: model_type %r is already registered; ignored",
                            _plugin, family.model_type)
                return
            family.plugin = _plugin  # who registered it (`txdsl plugins` shows it)
            families[family.model_type] = family

        try:
            impl.function(register)
        except Exception as exc:
            log.warning("txdsl plugin %r raised in register_hf_mappings: %s",
                        impl.plugin_name, exc)
    return families


@functools.lru_cache(maxsize=1)
def families() -> dict[str, HFFamily]:
    return load_families()
