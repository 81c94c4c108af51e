"""Hugging Face's ``rope_parameters`` <-> txdsl's ``rope(...)``, for the RoPE families
(LLaMA, Mistral, Qwen2).

``rope_type`` ``default``, ``linear``, ``dynamic``, ``yarn`` and ``llama3`` map onto
``rope(scaling: ...)`` (``plugins/txdsl_positions/rope.py``, tested against HF's
``ROPE_INIT_FUNCTIONS``); the others (``longrope``, DeepSeek's ``mscale``) are refused by
name. HF's ``dynamic`` always counts from ``max_position_embeddings``, so a spec whose
``original_context`` differs from its ``context`` is refused on export.
"""

from __future__ import annotations

from typing import Any

from txdsl.interop import MappingError

SCALINGS = ("default", "linear", "dynamic", "yarn", "llama3")
YARN_KEYS = {"beta_fast": "beta_fast", "beta_slow": "beta_slow",
             "attention_factor": "attention_factor", "truncate": "truncate"}


def hf_rope(c: Any) -> dict[str, Any]:
    """A config's RoPE settings, old (``rope_theta``, ``rope_scaling``) or new layout."""
    params = dict(getattr(c, "rope_parameters", None) or {})
    if not params and getattr(c, "rope_scaling", None):
        params = dict(c.rope_scaling)
    params.setdefault("rope_type", params.get("type", "default"))
    params.setdefault("rope_theta", getattr(c, "rope_theta", None) or 10000.0)
    return params


def rope_args(c: Any, name: str) -> tuple[float, str | None]:
    """``(theta, the rest of rope(...)'s arguments as spec text or None)`` for config ``c``."""
    p = hf_rope(c)
    kind = p["rope_type"]
    if kind not in SCALINGS:
        raise MappingError(f"{name}: rope scaling '{kind}' has no txdsl equivalent yet "
                           f"(supported: {', '.join(SCALINGS)})")
    if p.get("partial_rotary_factor", 1.0) != 1.0:
        raise MappingError(f"{name}: partial_rotary_factor {p['partial_rotary_factor']} "
                           "(supported: 1.0)")
    theta = float(p["rope_theta"])
    if kind == "default":
        return theta, None
    if p.get("mscale") or p.get("mscale_all_dim"):
        raise MappingError(f"{name}: yarn with mscale/mscale_all_dim (DeepSeek's) has no "
                           "txdsl equivalent yet (supported: attention_factor)")
    if p.get("factor") is None:
        raise MappingError(f"{name}: rope scaling '{kind}' without a factor")
    args = {"scaling": kind, "factor": float(p["factor"])}
    if kind in ("yarn", "llama3"):  # dynamic counts from the context, txdsl's default too
        args["original_context"] = int(p.get("original_max_position_embeddings")
                                       or c.max_position_embeddings)
    if kind == "yarn":
        args.update({ours: p[hf] for hf, ours in YARN_KEYS.items() if p.get(hf) is not None})
    if kind == "llama3":
        args.update(low_freq_factor=float(p["low_freq_factor"]),
                    high_freq_factor=float(p["high_freq_factor"]))
    text = ", ".join(f"{k}: {_lit(v)}" for k, v in args.items())
    return theta, text


def hf_rope_parameters(position: Any, context: int | None, name: str) -> dict[str, Any]:
    """The ``rope_parameters`` of an IR's ``rope`` component (the inverse of
    :func:`rope_args`); a setting HF can't express is refused."""
    a = position.args
    if a.get("fraction", 1.0) != 1.0:
        raise MappingError(f"{name}: rope(fraction: {a['fraction']}) (the exported model "
                           "rotates every dimension; supported: 1.0)")
    out: dict[str, Any] = {"rope_type": a.get("scaling") or "default",
                           "rope_theta": a["theta"]}
    scaling = a.get("scaling")
    if scaling is None:
        return out
    out["factor"] = a["factor"]
    original = a.get("original_context") or context
    if scaling == "dynamic" and original != context:
        raise MappingError(f"{name}: rope(scaling: dynamic, original_context: {original}) "
                           f"with context {context}: Hugging Face's dynamic scaling counts "
                           "from max_position_embeddings; set original_context to the "
                           "context, or leave it out")
    if scaling in ("yarn", "llama3"):
        out["original_max_position_embeddings"] = original
    if scaling == "yarn":
        out.update({hf: a[ours] for hf, ours in YARN_KEYS.items() if a.get(ours) is not None})
    if scaling == "llama3":
        out.update(low_freq_factor=a["low_freq_factor"], high_freq_factor=a["high_freq_factor"])
    return out


def _lit(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)
