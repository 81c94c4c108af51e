"""``txdsl plugins [--json] [--args]``: what is installed, by plugin, with versions.

Each plugin's registrations are grouped by family (``attention: full
[reference, sdpa]``); backends say whether they can run here and, if not,
why. ``--args`` adds every kind's arguments (type, default, constraints; in
JSON also choices and doc lines, as ``txdsl describe`` gives them). A broken
plugin is listed with its error; the command still exits 0.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

from ..arguments import arguments
from ..plugins import get_registry
from ..registry import Registry


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list installed plugins and what they register",
                       description="List every plugin (entry-point group 'txdsl') with its "
                                   "version, what it registers by family, and errors.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--args", action="store_true",
                   help="also every kind's arguments (txdsl describe KIND: one in full)")
    p.set_defaults(run=run)


def _registers(entries: list[str]) -> dict[str, dict[str, list[str]]]:
    """``["attention:full[sdpa]", "backend:eager"]`` -> ``{"attention": {"full": ["sdpa"]},
    "backend": {"eager": []}}``."""
    out: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for entry in entries:
        family, _, rest = entry.partition(":")
        name, _, impl = rest.partition("[")
        impls = out[family].setdefault(name, [])
        if impl:
            impls.append(impl.rstrip("]"))
    return {fam: dict(names) for fam, names in out.items()}


def report(registry: Registry, *, with_args: bool = False) -> dict[str, Any]:
    """The JSON ``txdsl plugins --json`` prints; ``with_args``: each plugin also gets
    ``arguments``, family -> kind -> its arguments (as ``txdsl describe --json``)."""
    from ..back.backends import backend_info

    plugins = []
    for name in sorted(registry.plugins):
        info = registry.plugins[name]
        plugins.append({"name": info.name, "module": info.module, "version": info.version,
                        "ok": info.error is None, "error": info.error,
                        "registers": _registers(info.registered)})
        if with_args:
            plugins[-1]["arguments"] = _arguments(registry, plugins[-1]["registers"])
    backends = {}
    for name in sorted(registry.backends):
        try:
            backends[name] = backend_info(registry.backends[name])
        except Exception as exc:  # a broken backend must not take the listing down
            backends[name] = {"name": name, "available": False,
                              "reason": f"available() raised {type(exc).__name__}: {exc}"}
        backends[name]["plugin"] = next(
            (p.name for p in registry.plugins.values() if f"backend:{name}" in p.registered), None)
    return {"plugins": plugins, "backends": backends}


def _arguments(registry: Registry, registers: dict[str, dict[str, list[str]]]
               ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {family: {kind: [a.to_json() for a in arguments(registry.args(family, kind))]
                     for kind in kinds if registry.has(family, kind)}
            for family, kinds in registers.items() if family != "backend"}


def _hf_mappings() -> dict[str, str]:
    """Plugin name -> the Hugging Face model types it converts (``register_hf_mappings``)."""
    try:
        from ..interop.registry import families
    except ImportError:  # pragma: no cover - torch missing
        return {}
    out: dict[str, list[str]] = defaultdict(list)
    for model_type, family in sorted(families().items()):
        out[getattr(family, "plugin", "?")].append(
            f"{model_type} ({', '.join(sorted(family.architectures))})")
    return {name: "; ".join(items) for name, items in out.items()}


def run(args: argparse.Namespace) -> int:
    registry = get_registry()
    data = report(registry, with_args=args.args)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for p in data["plugins"]:
        version = p["version"] or "unversioned"
        print(f"{p['name']} {version} ({p['module']})" + ("" if p["ok"] else "  BROKEN"))
        for family, names in p["registers"].items():
            if family == "backend":
                for name in names:
                    b = data["backends"].get(name, {})
                    state = "available" if b.get("available") else f"unavailable: {b.get('reason')}"
                    print(f"  backend: {name} ({state})")
                continue
            listing = ", ".join(f"{n} [{', '.join(i)}]" if i else n for n, i in names.items())
            print(f"  {family}: {listing}")
            if args.args:
                for kind in names:
                    if registry.has(family, kind):
                        sig = ", ".join(a.signature_text()
                                        for a in arguments(registry.args(family, kind)))
                        print(f"    {kind}({sig})")
        hf = _hf_mappings().get(p["name"])
        if hf:
            print(f"  hf: {hf}")
        if p["error"]:
            print(f"  error: {p['error']}")
    broken = sum(not p["ok"] for p in data["plugins"])
    if broken:
        print(f"\n{broken} plugin{'s' if broken > 1 else ''} failed to load; the others work")
    return 0
