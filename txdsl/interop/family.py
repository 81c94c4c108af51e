"""What a plugin declares for one Hugging Face architecture family (``register_hf_mappings``).

A family says which HF ``model_type`` it converts and, per HF model class,
which zoo model the generated spec ``extends``; how a HF config becomes that
spec's parameters (and any component overrides); the key rules (one list,
used in both directions, see :mod:`txdsl.interop.mapping`); and for export,
how a txdsl model's IR becomes the HF config. Subclass :class:`HFFamily` and
override what differs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .mapping import MappingError, Rule

ACTIVATIONS = {  # HF's activation names -> txdsl's
    "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu",
}
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def txdsl_act(name: str, what: str) -> str:
    if name not in ACTIVATIONS:
        raise MappingError(f"{what}: the activation '{name}' has no txdsl equivalent "
                           f"(supported: {', '.join(sorted(ACTIVATIONS))})")
    return ACTIVATIONS[name]


def refuse(config: Any, **unsupported: Any) -> None:
    """Refuse config values the mapping can't express: ``refuse(cfg, add_cross_attention=False)``
    raises if ``cfg.add_cross_attention`` isn't ``False``."""
    bad = [f"{k} = {getattr(config, k)!r} (supported: {v!r})" for k, v in unsupported.items()
           if getattr(config, k, v) != v]
    if bad:
        raise MappingError(f"{type(config).__name__}: can't convert " + "; ".join(bad))


class HFFamily:
    """One HF architecture family's mapping. Class variables declare it; methods convert."""

    model_type: ClassVar[str]  # config.model_type, e.g. "gpt2"
    zoo: ClassVar[str]  # the bundled spec the generated one imports, e.g. "gpt2.tx"
    architectures: ClassVar[dict[str, str]]  # HF model class -> zoo model it extends
    # HF keys that are buffers or unused weights, not parameters to convert (regexes)
    ignore: ClassVar[tuple[str, ...]] = ()
    # (HF head key, HF key of the matrix it may be tied to), when the head can be tied
    tie: ClassVar[tuple[str, str] | None] = None
    # HF base-model classes (``BertModel``): their keys lack the ``base_model_prefix``
    # (``bert.``) the rules are written with
    bare: ClassVar[dict[str, str]] = {}
    # (regex, replacement) from an instantiated model's key names to the checkpoint's, where
    # transformers renames on load (ViT's ``vit.layers.{i}.attention.q_proj`` is saved as
    # ``vit.encoder.layer.{i}.attention.attention.query``); the rules use the saved names
    in_memory: ClassVar[tuple[tuple[str, str], ...]] = ()

    def params(self, config: Any, arch: str) -> dict[str, Any]:
        """The spec's parameter values for ``config`` (``{"d_model": 64, ...}``)."""
        raise NotImplementedError

    def body(self, config: Any, arch: str, tied: bool) -> list[str]:
        """Statements after the parameters (component overrides, the head)."""
        return []

    def rules(self, config: Any, arch: str, tied: bool) -> list[Rule]:
        """The key rules, with placeholders (``{i}``) counted by :meth:`counts`."""
        raise NotImplementedError

    def counts(self, config: Any) -> dict[str, int]:
        return {"i": config.num_hidden_layers}

    def detect(self, ir: Any) -> str | None:
        """The HF model class a txdsl model's IR corresponds to, or ``None``."""
        return None

    def hf_config(self, ir: Any, arch: str) -> dict[str, Any]:
        """The HF config's keyword arguments for a txdsl model's IR."""
        raise NotImplementedError

    def check_arch(self, arch: str) -> None:
        if arch not in self.architectures:
            raise MappingError(f"{arch} is not supported for model_type '{self.model_type}' "
                               f"(supported: {', '.join(sorted(self.architectures))})")

    def spec(self, config: Any, arch: str, tied: bool, name: str) -> str:
        """The generated ``.tx`` text: the zoo import and a model extending the zoo's."""
        self.check_arch(arch)
        params = "; ".join(f"{k} = {_lit(v)}" for k, v in self.params(config, arch).items())
        lines = [f'import "zoo:{self.zoo}"', "",
                 f"# converted from Hugging Face {arch} ({self.model_type})",
                 f"model {name} extends {self.architectures[arch]} {{", f"  {params}"]
        lines += [f"  {line}" for line in self.body(config, arch, tied)]
        return "\n".join(lines + ["}", ""])


def _lit(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def first_layer(ir: Any, stack: str = "decoder"):
    s = getattr(ir, stack)
    return s.layers[0] if s is not None and s.layers else None


def head_kinds(ir: Any) -> dict[str, Any]:
    return {h.name: h.head for h in ir.heads}
