"""How a component's parameters shard under tensor parallelism: the hook beside the cost model.

A component's argument model (:class:`txdsl.sdk.args.ComponentArgs`) may
define ``tp_plan(dims, tp)`` returning a :class:`TPPlan`, the way it defines
``param_count``; :func:`txdsl.parallel.parallelize` applies it with PyTorch's
``parallelize_module`` and ``txdsl show --tp`` reports it. The styles, by name
(so declaring one imports nothing from ``torch.distributed``):

- ``"colwise"``: ``ColwiseParallel`` — an ``nn.Linear``'s output features
  (weight rows, bias) split across ranks, its input replicated, its output
  left local (sharded on the last dimension);
- ``"rowwise"``: ``RowwiseParallel`` — its input features split (the local
  output of a ``colwise`` layer before it), the partial outputs summed
  across ranks (one all-reduce), the bias replicated;
- ``"vocab_head"``: an LM head's ``weight`` ``(vocab, d)`` split over the
  vocabulary, logits gathered (the token embedding is split the same way,
  so a tied head stays tied);
- ``"vocab_embedding"``: ``RowwiseParallel`` on an ``nn.Embedding``, its
  rows (the vocabulary) split, each rank's lookups summed (the model's token
  embedding gets it; a plugin's own embedding table may declare it).

``local`` names module attributes that count something the split divides
(``{"heads": 12, "kv_heads": 4}``): each rank's module is given
``value // tp``, so code that reshapes by ``self.heads`` sees its local heads.
``fixed`` sets attributes to a value (``{"kv_heads": 1}``). ``kv_replicated``
names replicated projections whose output holds ``n`` heads of which each rank
takes its own group's (``rank * n // tp``; grouped-query attention with
fewer key/value heads than ranks); their gradient is summed over the ranks.
``divisible`` names the arguments ``tp`` must divide; :meth:`TPPlan.check`
raises :class:`ArgError` at that argument (``txdsl check --tp``). A kind whose
``tp_plan`` returns ``None`` (the default) has no declaration: it is
replicated on every rank, and ``txdsl show --tp --explain`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .args import ArgError

STYLES = ("colwise", "rowwise", "vocab_head", "vocab_embedding")


@dataclass(frozen=True)
class TPPlan:
    """A component's tensor-parallel declaration (see the module docstring).

    ``styles``: submodule name (relative to the component's module; ``""`` is
    the module itself) -> style name; empty: replicated by declaration.
    ``bias_heads``: the stack's position bias ``(B|1, H, T, S)`` is sliced to
    this rank's heads before the module sees it (ALiBi, T5 buckets).
    """

    styles: Mapping[str, str] = field(default_factory=dict)
    local: Mapping[str, int] = field(default_factory=dict)
    fixed: Mapping[str, int] = field(default_factory=dict)
    kv_replicated: Mapping[str, int] = field(default_factory=dict)
    divisible: Mapping[str, int] = field(default_factory=dict)
    hints: Mapping[str, str] = field(default_factory=dict)  # argument -> hint when refused
    bias_heads: bool = False
    note: str = ""  # one line for --explain: how it splits

    def __post_init__(self) -> None:
        for name, style in self.styles.items():
            if style not in STYLES:
                raise ValueError(f"tp_plan: submodule {name!r} has style {style!r}; "
                                 f"known: {', '.join(STYLES)}")

    def check(self, tp: int) -> None:
        """Raise :class:`ArgError` if ``tp`` doesn't divide what the split divides."""
        for arg, value in self.divisible.items():
            if value % tp:
                hint = self.hints.get(arg, f"pick a tensor-parallel size dividing {arg} ({value})")
                raise ArgError(f"{arg} ({value}) is not divisible by the tensor-parallel "
                               f"size ({tp})", arg=arg, hint=hint)


REPLICATED = TPPlan(note="replicated (declared)")


def heads_split(heads: int, kv_heads: int, tp: int = 1, *, q: str = "q_proj",
                k: str = "k_proj", v: str = "v_proj", out: str = "out_proj") -> TPPlan:
    """Attention's split (Megatron-LM, Shoeybi et al. 2019, https://arxiv.org/abs/1909.08053):
    q/k/v column-wise so each rank holds whole heads, the output projection
    row-wise. Grouped-query attention splits its ``kv_heads`` too when ``tp``
    divides them; with fewer key/value heads than ranks (``tp`` a multiple of
    ``kv_heads``: multi-query attention, Shazeer 2019) K/V are replicated and
    each rank keeps the one head its query heads read."""
    if kv_heads < tp and tp % kv_heads == 0 and heads % tp == 0:
        return TPPlan(styles={q: "colwise", out: "rowwise"}, local={"heads": heads},
                      fixed={"kv_heads": 1}, kv_replicated={k: kv_heads, v: kv_heads},
                      divisible={"heads": heads}, bias_heads=True,
                      note="heads split: q column-wise, output row-wise; K/V replicated "
                           f"(kv_heads {kv_heads} < tp {tp}), each rank its group's head")
    divisible = {"heads": heads} if kv_heads == heads else {"heads": heads, "kv_heads": kv_heads}
    hint = (f"pick a tensor-parallel size dividing kv_heads ({kv_heads}), or a multiple of it "
            "(then K/V are replicated)")
    return TPPlan(styles={q: "colwise", k: "colwise", v: "colwise", out: "rowwise"},
                  hints={"kv_heads": hint},
                  local={"heads": heads, "kv_heads": kv_heads}, divisible=divisible,
                  bias_heads=True, note="heads split: q/k/v column-wise, output row-wise")


def column_then_row(first: tuple[str, ...], last: str) -> TPPlan:
    """A feed-forward's split: the ``first`` layers column-wise (a gate and its up
    projection split alike, so rank r's gate units multiply rank r's up units),
    ``last`` row-wise."""
    styles = {name: "colwise" for name in first} | {last: "rowwise"}
    return TPPlan(styles=styles, note=f"{', '.join(first)} column-wise, {last} row-wise")
