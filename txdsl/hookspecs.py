"""The plugin hooks: how plugins add components and backends to txdsl.

Every hook is called once per plugin when the registry is first needed
(``txdsl.plugins.get_registry``). Each receives ``register``, a callback
owned by the host, and returns nothing. A name two plugins both register
(with different argument models, or the same implementation name) is a
recorded conflict: a built-in wins unless ``TXDSL_PREFER`` says otherwise,
and a build that uses the contested name fails naming both plugins until
it does. A plugin implements any subset::

    from txdsl.hookspecs import hookimpl

    @hookimpl
    def register_attention(register):
        register(name="window", args=WindowArgs, build=WindowAttention.from_args,
                 targets=Targets(devices=frozenset({"cpu", "cuda"})), priority=0)

``register(name, args, build=None, *, impl="reference", targets=Targets(),
priority=0, doc=None)``:

- ``name``: the kind written in specs (``window`` in ``window(heads: 8, window: 64)``);
- ``args``: a pydantic model deriving from the family's base in
  :mod:`txdsl.sdk` (``AttentionArgs``, ``NormArgs``, ...); every
  implementation of one name must use the same model;
- ``build``: ``build(args, ctx: BuildContext) -> nn.Module``; ``None``
  declares the kind (so specs using it check and show) without an
  implementation yet: building it fails with a clear error;
- ``impl``: the implementation's name (``reference``, ``sdpa``, ``triton``);
  several implementations of one name are selected per target by
  ``targets`` and ``priority`` (higher wins); ``reference`` must exist for a
  kind with any implementation, since ``txdsl verify`` compares against it.

Attention modules follow the contract in :mod:`txdsl.sdk.attention` (subclass
``txdsl.sdk.Attention``, override ``attend``); ``txdsl verify KIND`` runs the
contract suite (:mod:`txdsl.sdk.testing`) on an installed kind.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "txdsl"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]

# ----------------------------------------------------------------- components


@hookspec
def register_attention(register: Register) -> None:
    """Register attention kinds (family ``attention``; args derive from ``AttentionArgs``).

    Built modules are called as ``attn(x, memory=None, *, mask, position, cache)``
    (see :mod:`txdsl.sdk.attention`) and return ``(B, T, d_model)``.
    """


@hookspec
def register_norms(register: Register) -> None:
    """Register normalisations (family ``norm``; args derive from ``NormArgs``).

    Built modules map ``(..., width)`` to the same shape.
    """


@hookspec
def register_positions(register: Register) -> None:
    """Register position schemes (family ``position``; args derive from ``PositionArgs``).

    ``args.acts`` says where the scheme acts: ``embedding`` modules map
    position ids ``(B, T)`` to ``(B, T, width)`` vectors added to the
    embeddings; the others implement the hooks of
    :class:`txdsl.sdk.attention.PositionModule`.
    """


@hookspec
def register_ffns(register: Register) -> None:
    """Register feed-forward blocks (family ``ffn``; args derive from ``FFNArgs``).

    Built modules map ``(B, T, d_model)`` to ``(B, T, d_model)``.
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register output heads (family ``head``; args derive from ``HeadArgs``).

    Built modules map the final hidden states ``(B, T, d_model)`` to their
    output (logits ``(B, T, vocab)``, pooled ``(B, d_model)``, ...).
    """


@hookspec
def register_embeddings(register: Register) -> None:
    """Register input embeddings other than token ids (family ``patches``;
    args derive from ``PatchesArgs``).

    Built modules map ``pixel_values (B, C, H, W)`` to ``(B, N, embed_size)``.
    """


# ------------------------------------------------------------------- backends


@hookspec
def register_backends(register: Register) -> None:
    """Register backends that lower a built module (``eager``, ``inductor``, ...).

    Call ``register(backend)`` with an object following
    :class:`txdsl.back.backends.Backend`: ``name``, ``description``,
    ``options_model`` (pydantic, ``extra="forbid"``), ``self_contained``,
    ``available(target=None) -> str | None`` (why it can't run here, or
    ``None``), ``lower(module, example_inputs, options)``, ``save(lowered,
    dir)`` and ``load(dir, module, options)``.
    """


# ----------------------------------------------------------- checkpoint interop


@hookspec
def register_hf_mappings(register: Register) -> None:
    """Register Hugging Face checkpoint mappings (``txdsl.from_hf`` / ``to_hf``).

    Call ``register(family)`` with a :class:`txdsl.interop.HFFamily`: the HF
    ``model_type`` and model classes it converts, the spec a config becomes
    (``extends`` a zoo spec), the HF config a txdsl model becomes, and one list
    of key rules (:mod:`txdsl.interop.mapping`: renames with layer placeholders,
    transposes, fused splits) that converts weights in both directions. A
    ``model_type`` two plugins register is refused for the second.
    """
