"""The catalogue: every component kind txdsl means to express, installed or not.

Plain data, from ``VARIANTS.md`` (the survey's variants and the families'
defining papers): family -> kind -> what it is and where it comes from. The
registry says what is *installed*; this says what *exists* in txdsl's plan,
so an unknown kind's error can tell "in the catalogue, not installed (yet)"
from a likely typo (:func:`unknown_kind`, used by resolution and by kernel
selection), and ``txdsl describe`` can say what a missing kind would be.
"""

from __future__ import annotations

import difflib
from typing import Iterable, NamedTuple

from .errors import Span, SpecError
from .registry import FAMILIES, Registry


class Entry(NamedTuple):
    summary: str  # what the kind is, in a line
    paper: str  # where it comes from


CATALOGUE: dict[str, dict[str, Entry]] = {
    "attention": {
        "full": Entry("exact softmax attention (FlashAttention is a kernel of it)",
                      "Vaswani et al. 2017"),
        "local": Entry("band / sliding-window attention", "Beltagy et al. 2020, Longformer"),
        "dilated": Entry("dilated sliding window", "Beltagy et al. 2020, Longformer"),
        "strided": Entry("strided and fixed sparse patterns", "Child et al. 2019, Sparse Transformer"),
        "fixed": Entry("fixed sparse pattern: own block + summary positions",
                       "Child et al. 2019, Sparse Transformer"),
        "block": Entry("block-local attention", "Qiu et al. 2020, BlockBERT"),
        "global": Entry("global tokens that attend to, and are attended by, every token",
                        "Beltagy et al. 2020; Zaheer et al. 2020"),
        "random": Entry("each query attends to random keys", "Zaheer et al. 2020, BigBird"),
        "sparse": Entry("a composition of sparse patterns (Longformer, BigBird, Star-Transformer)",
                        "Zaheer et al. 2020; Guo et al. 2019"),
        "longformer": Entry("sliding window + global tokens with their own q/k/v projections",
                            "Beltagy et al. 2020, Longformer"),
        "lsh": Entry("locality-sensitive hashing buckets", "Kitaev et al. 2020, Reformer"),
        "routing": Entry("k-means routing clusters", "Roy et al. 2021, Routing Transformer"),
        "topk": Entry("the top-k scores per query",
                      "Zhao et al. 2019, Explicit Sparse Transformer"),
        "linear": Entry("elu(x)+1 feature map, causal via prefix sums",
                        "Katharopoulos et al. 2020"),
        "performer": Entry("FAVOR+ positive random features", "Choromanski et al. 2021, Performer"),
        "cosformer": Entry("ReLU feature map with a cos re-weighting of distance",
                           "Qin et al. 2022, cosFormer"),
        "probsparse": Entry("ProbSparse: only the most informative queries",
                            "Zhou et al. 2021, Informer"),
        "clustered": Entry("queries clustered into prototypes", "Vyas et al. 2020"),
        "compressed": Entry("strided convolution over keys and values",
                            "Liu et al. 2018, memory-compressed attention"),
        "persistent": Entry("learned persistent key/value vectors appended to the keys",
                            "Sukhbaatar et al. 2019, all-attention"),
        "linformer": Entry("low-rank length projection of keys and values",
                           "Wang et al. 2020, Linformer"),
        "inducing": Entry("attention through inducing points",
                          "Lee et al. 2019, Set Transformer; Ma et al. 2021, Luna"),
        "nystrom": Entry("Nystrom landmark approximation", "Xiong et al. 2021, Nystromformer"),
        "lowrank": Entry("factored (low-rank) q/k/v/out projections, small heads",
                         "Lin et al. 2021, survey: low-rank parameterization"),
        "luna": Entry("a packed context carried from layer to layer", "Ma et al. 2021, Luna"),
        "prior": Entry("attention with a locality prior: the built-in kind is `locality`",
                       "Yang et al. 2018"),
        "synthesizer": Entry("synthesized attention weights: the built-in kinds are "
                             "`synthesizer_dense` and `synthesizer_random`",
                             "Tay et al. 2021, Synthesizer"),
        "talking_heads": Entry("heads mixed linearly before and after the softmax",
                               "Shazeer et al. 2020"),
        "collaborative": Entry("key/query projections shared across heads",
                               "Cordonnier et al. 2020"),
        "adaptive_span": Entry("a learned attention span per head", "Sukhbaatar et al. 2019"),
        "multi_scale": Entry("heads with different spans", "Guo et al. 2020, Multi-Scale Transformer"),
        "locality": Entry("a Gaussian locality prior with a learned width per head",
                          "Yang et al. 2018; Guo et al. 2019"),
        "realformer": Entry("residual attention: adds the previous layer's scores",
                            "He et al. 2020, RealFormer"),
        "synthesizer_dense": Entry("attention weights predicted from each token alone",
                                   "Tay et al. 2021, Synthesizer"),
        "synthesizer_random": Entry("learned or fixed random attention weights",
                                    "Tay et al. 2021, Synthesizer"),
        "head_routing": Entry("heads aggregated by routing-by-agreement", "Li et al. 2019"),
        "task_adapter": Entry("attention conditioned on a task embedding",
                              "Pilault et al. 2021, CA-MTL"),
        "relative_xl": Entry("relative attention with global content/position biases",
                             "Dai et al. 2019, Transformer-XL"),
        "two_stream": Entry("content and query streams for permutation LM", "Yang et al. 2019, XLNet"),
        "disentangled": Entry("content-to-position and position-to-content terms",
                              "He et al. 2021, DeBERTa"),
        "relative": Entry("softmax attention with Shaw or CoPE score terms",
                          "Shaw et al. 2018; Golovneva et al. 2024, CoPE"),
    },
    "position": {
        "sinusoidal": Entry("fixed sinusoids added to the embeddings", "Vaswani et al. 2017"),
        "learned": Entry("learned absolute positions added to the embeddings",
                         "Gehring et al. 2017; Devlin et al. 2019"),
        "shaw": Entry("learned relative key and value embeddings", "Shaw et al. 2018"),
        "relative_xl": Entry("sinusoidal relative embeddings", "Dai et al. 2019, Transformer-XL"),
        "t5_bias": Entry("bucketed relative position bias", "Raffel et al. 2020, T5"),
        "rope": Entry("rotary transform of queries and keys", "Su et al. 2021, RoFormer"),
        "alibi": Entry("linear distance bias per head, extrapolates", "Press et al. 2022, ALiBi"),
        "disentangled": Entry("relative embeddings for disentangled attention",
                              "He et al. 2021, DeBERTa"),
        "cope": Entry("contextual positions counted by gates", "Golovneva et al. 2024, CoPE"),
    },
    "norm": {
        "layernorm": Entry("mean/variance normalisation", "Ba et al. 2016"),
        "rmsnorm": Entry("root-mean-square normalisation", "Zhang & Sennrich 2019"),
        "scalenorm": Entry("one learned scale over the l2-normalised vector",
                           "Nguyen & Salazar 2019"),
        "fixnorm": Entry("l2 normalisation to a fixed length", "Nguyen & Chiang 2018"),
        "batchnorm": Entry("batch statistics (why Transformers use LayerNorm)",
                           "Ioffe & Szegedy 2015; Shen et al. 2020"),
    },
    "ffn": {
        "mlp": Entry("two linear layers with an activation", "Vaswani et al. 2017"),
        "glu": Entry("gated linear unit", "Dauphin et al. 2017; Shazeer 2020"),
        "reglu": Entry("ReLU-gated linear unit", "Shazeer 2020"),
        "geglu": Entry("GELU-gated linear unit", "Shazeer 2020"),
        "swiglu": Entry("SiLU-gated linear unit", "Shazeer 2020"),
        "moe": Entry("mixture of experts with top-k routing",
                     "Shazeer et al. 2017; Fedus et al. 2022, Switch Transformer"),
    },
    "head": {
        "lm": Entry("language-model logits", "Radford et al. 2019"),
        "mlm": Entry("masked-language-model head", "Devlin et al. 2019, BERT"),
        "pooler": Entry("first-token pooler", "Devlin et al. 2019, BERT"),
        "classifier": Entry("sequence classifier", "Devlin et al. 2019, BERT"),
        "token_classifier": Entry("per-token classifier", "Devlin et al. 2019, BERT"),
        "rtd": Entry("replaced-token detection", "Clark et al. 2020, ELECTRA"),
        "pooled_classifier": Entry("pooled first-token classifier", "Devlin et al. 2019, BERT"),
    },
    "patches": {
        "conv": Entry("image patches as tokens (convolution)", "Dosovitskiy et al. 2021, ViT"),
    },
}

GUIDE = 'README, "Writing a plugin"'


def entry(family: str, kind: str) -> Entry | None:
    """The catalogue's entry for ``kind`` of ``family``, if it has one."""
    return CATALOGUE.get(family, {}).get(kind)


def families_of(kind: str) -> list[str]:
    """The families whose catalogue names ``kind``."""
    return [family for family, kinds in CATALOGUE.items() if kind in kinds]


# Kinds other libraries name that txdsl writes as a built-in kind with arguments.
SPELLED_HERE: dict[str, dict[str, str]] = {
    "attention": {
        **dict.fromkeys(("mqa", "multi_query"), "multi-query attention is "
                        "`full(heads: heads, kv_heads: 1)`"),
        **dict.fromkeys(("gqa", "grouped_query"), "grouped-query attention is "
                        "`full(heads: heads, kv_heads: N)` (N dividing heads)"),
        **dict.fromkeys(("mha", "multihead", "multi_head", "vanilla", "softmax", "dense",
                         "scaled_dot_product", "dot_product"),
                        "softmax attention over every key is `full(heads: heads)`"),
        **dict.fromkeys(("sdpa", "flash", "flash_attention", "flash_attn", "flex"),
                        "that is a kernel, not a kind: write `full(heads: heads)`; the build "
                        "picks the kernel for the target (`txdsl build --explain`, "
                        "`--kernel attention=sdpa`)"),
        **dict.fromkeys(("sliding_window", "swa", "windowed", "window"),
                        "sliding-window attention is `local(heads: heads, window: W)`"),
    },
    "ffn": dict.fromkeys(("feedforward", "feed_forward", "ff", "dense", "ffn"),
                         "a two-layer feed-forward is `mlp(hidden: 4 * d_model)`"),
    "norm": {name: f"did you mean '{kind}'?" for name, kind in (
        ("layer_norm", "layernorm"), ("ln", "layernorm"), ("rms_norm", "rmsnorm"),
        ("rms", "rmsnorm"), ("batch_norm", "batchnorm"), ("scale_norm", "scalenorm"))},
}


def unknown_kind_hint(family: str, kind: str, installed: Iterable[str],
                      elsewhere: Iterable[str] = ()) -> str:
    """The hint for a ``family`` kind that no installed plugin provides.

    ``installed``: the family's installed kinds; ``elsewhere``: the other
    families that have ``kind`` installed. In order: a kind of another family;
    a kind of the catalogue not installed yet; a likely typo (of an installed
    kind, or of one in the catalogue); else a new kind, which needs a plugin.
    """
    names = sorted(set(installed))
    listing = f"installed: {', '.join(names)}" if names else "none installed"
    spelled = SPELLED_HERE.get(family, {}).get(kind)
    if spelled is not None:
        return f"{spelled} ({listing})"
    other = sorted(set(elsewhere))
    if other:
        article = lambda w: f"{'an' if w[0] in 'aeiou' else 'a'} {w}"  # noqa: E731
        return (f"'{kind}' is {' and '.join(map(article, other))} kind, not {article(family)} one "
                f"(`txdsl describe {kind}`); {family} kinds {listing}")
    known = entry(family, kind)
    if known is not None:
        return (f"'{kind}' is in txdsl's catalogue ({known.summary}; {known.paper}) but no "
                f"installed plugin provides it yet: install one that does, or write it "
                f"({GUIDE}); {listing}")
    planned = sorted(set(CATALOGUE.get(family, {})) - set(names))
    close = difflib.get_close_matches(kind, names + planned, n=1, cutoff=0.6)
    if close and close[0] in names:
        return (f"did you mean '{close[0]}'? ({listing}; `txdsl describe {close[0]}` shows "
                f"its arguments)")
    if close:
        return (f"did you mean '{close[0]}'? (in txdsl's catalogue, not installed yet; "
                f"{listing})")
    return (f"{listing}; '{kind}' is not in txdsl's catalogue either: a new {family} kind "
            f"comes from a plugin ({GUIDE})")


def unknown_kind(family: str, kind: str, registry: Registry, span: Span | None) -> SpecError:
    """The error for a kind no installed plugin provides: in the catalogue (not installed
    yet), of another family, or a likely typo (:func:`unknown_kind_hint`)."""
    elsewhere = [f for f in FAMILIES if f != family and registry.has(f, kind)]
    message = (f"{family} '{kind}' is not installed" if entry(family, kind) and not elsewhere
               else f"unknown {family} '{kind}'")
    return SpecError(message, span,
                     unknown_kind_hint(family, kind, registry.kinds(family), elsewhere))


def declared_hint(family: str, kind: str, plugin: str | None) -> str:
    """The hint for a kind that is registered without an implementation (declared)."""
    by = f"plugin '{plugin}' declares" if plugin else "it is declared with"
    return (f"{by} its arguments and sizes, so specs using it check and show "
            f"(`txdsl describe {kind}`); building it needs a plugin that registers an "
            f"implementation ({GUIDE})")
