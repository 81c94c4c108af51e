"""Everything about one component kind, for ``txdsl describe`` and ``txdsl plugins --args``.

:func:`find_kind` turns what a user typed (``rope``, ``position/relative_xl``)
into a ``(family, kind)`` of the registry, or a :class:`DescribeError` with a
hint (did you mean, in the catalogue but not installed, ambiguous).
:func:`describe_kind` gathers, as JSON-ready data: the arguments
(:mod:`txdsl.arguments`), the summary and paper (the argument model's
docstring, else its module's, else the catalogue), where a position acts and
which positions an attention accepts, every implementation with its targets
and whether it can run here, and the plugins (with versions) that provide it.
It only reads the registry.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
from typing import Any

from .arguments import arguments
from .catalogue import CATALOGUE, entry, families_of, unknown_kind_hint
from .front.validate import ACTS
from .registry import FAMILIES, Implementation, Registry
from .sdk.targets import Target, Targets

HERE = Target()  # what "runs here" means: cpu, float32, eager
FIELD = {"attention": "attention", "norm": "norm", "position": "position", "ffn": "ffn",
         "head": "head", "patches": "patches"}
_CITATION = re.compile(r"\(([^()]*?\b(?:1[89]|20)\d\d\b[^()]*)\)")
_URL = re.compile(r"https?://[^\s)>\]]+")


class DescribeError(Exception):
    """What the user asked for is not one installed kind; ``ambiguous``: it is several."""

    def __init__(self, message: str, hint: str | None = None, *, ambiguous: bool = False):
        super().__init__(message)
        self.message, self.hint, self.ambiguous = message, hint, ambiguous


def _family(name: str) -> str:
    if name in FAMILIES:
        return name
    if name.endswith("s") and name[:-1] in FAMILIES:  # "positions", "norms", "heads"
        return name[:-1]
    close = difflib.get_close_matches(name, FAMILIES, n=1)
    raise DescribeError(f"unknown family '{name}'",
                        (f"did you mean '{close[0]}'? " if close else "")
                        + f"(families: {', '.join(FAMILIES)})")


def find_kind(registry: Registry, name: str, family: str | None = None) -> tuple[str, str]:
    """``(family, kind)`` for ``name`` (``kind`` or ``family/kind``), or a :class:`DescribeError`."""
    if "/" in name:
        prefix, name = name.split("/", 1)
        prefix = _family(prefix)
        if family is not None and _family(family) != prefix:
            raise DescribeError(f"'{prefix}/{name}' contradicts --family {family}")
        family = prefix
    elif family is not None:
        family = _family(family)
    families = [f for f in ([family] if family else FAMILIES) if registry.has(f, name)]
    if len(families) == 1:
        return families[0], name
    if families:
        raise DescribeError(
            f"'{name}' is a kind of several families: {', '.join(families)}",
            f"say which: txdsl describe {families[0]}/{name} (or --family {families[0]})",
            ambiguous=True)
    if family is not None:
        elsewhere = [f for f in FAMILIES if f != family and registry.has(f, name)]
        raise DescribeError(_not_installed(family, name),
                            unknown_kind_hint(family, name, registry.kinds(family), elsewhere))
    planned = families_of(name)
    if planned:
        raise DescribeError(_not_installed(planned[0], name),
                            unknown_kind_hint(planned[0], name, registry.kinds(planned[0])))
    if name in registry.backends:
        raise DescribeError(f"'{name}' is a backend, not a component kind",
                            "txdsl plugins lists the backends and whether each can run here")
    raise DescribeError(f"unknown kind '{name}'", _typo_hint(registry, name))


def _not_installed(family: str, kind: str) -> str:
    return (f"{family} '{kind}' is not installed" if entry(family, kind)
            else f"unknown {family} '{kind}'")


def _typo_hint(registry: Registry, name: str) -> str:
    installed = {k: f for f in FAMILIES for k in registry.kinds(f)}
    planned = {k: f for f, kinds in CATALOGUE.items() for k in kinds if k not in installed}
    close = difflib.get_close_matches(name, [*installed, *planned], n=1, cutoff=0.6)
    if close and close[0] in installed:
        return f"did you mean '{close[0]}'? ({_a(installed[close[0]])} kind)"
    if close:
        return (f"did you mean '{close[0]}'? ({_a(planned[close[0]])} kind in txdsl's "
                f"catalogue, not installed yet)")
    return ("txdsl plugins --args lists every installed kind with its arguments; a new kind "
            'comes from a plugin (README, "Writing a plugin")')


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


# ------------------------------------------------------------- describing


def describe_kind(registry: Registry, family: str, kind: str) -> dict[str, Any]:
    """Everything about ``kind`` of ``family`` (installed), as JSON-ready data."""
    impls = [i for i in registry.all() if i.family == family and i.name == kind]
    model = registry.args(family, kind)
    doc = inspect.cleandoc(model.__dict__.get("__doc__") or "")
    module = sys.modules.get(model.__module__)
    module_doc = inspect.cleandoc(getattr(module, "__doc__", None) or "")
    known = entry(family, kind)
    summary = _first_paragraph(doc) or next((i.doc for i in impls if i.doc), "") \
        or (known.summary if known else "")
    paper = (_citation(summary) or _citation(_first_paragraph(module_doc))
             or (known.paper if known else None))
    args = arguments(model)
    info: dict[str, Any] = {
        "family": family, "kind": kind, "summary": summary, "doc": doc,
        "paper": paper, "urls": _urls(doc, module_doc),
        "usage": f"{FIELD[family]} = {kind}("
                 + ", ".join(f"{a.name}: ..." for a in args if a.required) + ")",
        "arguments": [a.to_json() for a in args],
        "implementations": [_implementation(i) for i in registry.implementations(family, kind)],
        "declared": not registry.implementations(family, kind),
        "plugins": _plugins(registry, impls),
        "catalogue": known._asdict() if known else None,
    }
    if family == "position":
        info.update(_position(registry, model))
    if family == "attention":
        info.update(_attention(registry, model))
    return info


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`")


def _urls(*docs: str) -> list[str]:
    found = [u.rstrip(".,;:") for d in docs for u in _URL.findall(d)]
    return list(dict.fromkeys(found))


def _citation(text: str) -> str | None:
    """``"Rotary position embedding (Su et al. 2021), ..."`` -> ``"Su et al. 2021"``."""
    m = _CITATION.search(text)
    if m is None:
        return None
    return _URL.sub("", m.group(1)).strip(" ,;") or None


def _implementation(impl: Implementation) -> dict[str, Any]:
    against = impl.targets.reasons_against(HERE)
    return {"impl": impl.impl, "plugin": impl.plugin, "priority": impl.priority,
            "targets": targets_json(impl.targets), "targets_text": targets_text(impl.targets),
            "runs_here": not against,
            "reasons": against}


def targets_json(t: Targets) -> dict[str, Any]:
    """``Targets`` as data: ``None`` (any) or sorted lists."""
    return {"devices": sorted(t.devices) if t.devices is not None else None,
            "dtypes": sorted(t.dtypes) if t.dtypes is not None else None,
            "backends": sorted(t.backends) if t.backends is not None else None,
            "min_cuda_capability": list(t.min_cuda_capability) if t.min_cuda_capability else None,
            "requires": list(t.requires)}


def targets_text(t: Targets) -> str:
    """``any device, dtype, backend`` or ``devices cuda; requires triton``."""
    parts, anys = [], []
    for name, values in (("device", t.devices), ("dtype", t.dtypes), ("backend", t.backends)):
        if values is None:
            anys.append(name)
        else:
            parts.append(f"{name}s {', '.join(sorted(values))}")
    if t.min_cuda_capability:
        parts.append(f"CUDA capability >= {'.'.join(map(str, t.min_cuda_capability))}")
    if t.requires:
        parts.append(f"requires {', '.join(t.requires)}")
    if anys:
        parts.insert(0, f"any {', '.join(anys)}")
    return "; ".join(parts)


def _plugins(registry: Registry, impls: list[Implementation]) -> list[dict[str, Any]]:
    out = []
    for name in dict.fromkeys(i.plugin for i in impls):
        p = registry.plugins.get(name)
        out.append({"name": name, "version": p.version if p else None,
                    "module": p.module if p else None})
    return out


def _position(registry: Registry, model: type) -> dict[str, Any]:
    acts = getattr(model, "acts", None)
    where = ("the embedding block" if acts == "embedding"
             else "an encoder/decoder block" if acts else None)
    users = [k for k in registry.kinds("attention")
             if acts in getattr(registry.args("attention", k), "accepts", ())
             and _pair(registry, k, model)]
    return {"acts": acts, "acts_doc": ACTS.get(acts) if acts else None, "written_in": where,
            "accepted_by": users if acts and acts != "embedding" else None}


def _attention(registry: Registry, model: type) -> dict[str, Any]:
    accepts = sorted(getattr(model, "accepts", ()) or ())
    takes = [k for k in registry.kinds("position")
             if getattr(registry.args("position", k), "acts", None) in accepts
             and k in (getattr(model, "positions", None) or (k,))
             and _serves(registry.args("position", k), model, registry)]
    return {"accepts": accepts, "positions": takes}


def _pair(registry: Registry, attention: str, position: type) -> bool:
    """Kinds may name their partners (``positions`` on attention args, ``attentions`` on
    position args; validation refuses other pairs): Shaw and CoPE pair with ``relative``."""
    serves = getattr(position, "attentions", None)
    takes = getattr(registry.args("attention", attention), "positions", None)
    name = next((k for k in registry.kinds("position") if registry.args("position", k)
                 is position), None)
    return (serves is None or attention in serves) and (takes is None or name in takes)


def _serves(position: type, attention: type, registry: Registry) -> bool:
    serves = getattr(position, "attentions", None)
    if serves is None:
        return True
    return any(registry.args("attention", k) is attention for k in serves
               if registry.has("attention", k))


def kinds_with_arguments(registry: Registry) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """family -> kind -> its arguments (JSON), for every installed kind."""
    return {family: {kind: [a.to_json() for a in arguments(registry.args(family, kind))]
                     for kind in registry.kinds(family)}
            for family in FAMILIES if registry.kinds(family)}
