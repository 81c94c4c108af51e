"""The declared style names (:mod:`txdsl.sdk.sharding`) as PyTorch ``ParallelStyle`` objects.

``colwise``/``rowwise``/``vocab_embedding`` are PyTorch's own
``ColwiseParallel``/``RowwiseParallel``. ``vocab_head`` is
:class:`VocabParallelHead`, a ``ParallelStyle`` for a module computing
``F.linear(hidden, weight, bias)`` with ``weight`` ``(vocab, d)`` that isn't
an ``nn.Linear`` (the LM head holds a bare parameter, possibly the token
embedding's): the weight and bias split over the vocabulary (``Shard(0)``,
as ``RowwiseParallel`` splits the embedding), the hidden state replicated,
the logits ``(B, T, vocab)`` gathered so every rank holds them whole.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, ParallelStyle, RowwiseParallel


class VocabParallelHead(ParallelStyle):
    """Vocabulary-parallel logits: ``weight``/``bias`` ``Shard(0)``, hidden replicated,
    logits all-gathered (``Shard(-1)`` -> ``Replicate``) and returned as a local tensor."""

    def _partition(self, name: str, module: nn.Module, mesh: DeviceMesh) -> None:
        for pname, param in list(module.named_parameters(recurse=False)):
            sharded = distribute_tensor(param.detach(), mesh, [Shard(0)],
                                        src_data_rank=self.src_data_rank)
            module.register_parameter(pname, nn.Parameter(sharded,
                                                          requires_grad=param.requires_grad))

    @staticmethod
    def _input(module: nn.Module, inputs: tuple, mesh: DeviceMesh) -> tuple:
        hidden = inputs[0]
        if not isinstance(hidden, DTensor):
            hidden = DTensor.from_local(hidden, mesh, (Replicate(),), run_check=False)
        return (hidden, *inputs[1:])

    @staticmethod
    def _output(module: nn.Module, outputs: Any, mesh: DeviceMesh) -> Any:
        return outputs.redistribute(placements=(Replicate(),)).to_local()  # (B, T, vocab)

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        return distribute_module(module, device_mesh, self._partition, self._input, self._output)


def parallel_style(name: str) -> ParallelStyle:
    """The ``ParallelStyle`` a declared style name stands for."""
    if name == "colwise":
        return ColwiseParallel()
    if name == "rowwise":
        return RowwiseParallel()  # input: the colwise layer's local shard (Shard(-1))
    if name == "vocab_embedding":
        return RowwiseParallel(input_layouts=Replicate())  # every rank has all token ids
    if name == "vocab_head":
        return VocabParallelHead()
    raise ValueError(f"unknown tensor-parallel style {name!r}")


def slice_bias_heads(module: nn.Module, heads: int, mesh: DeviceMesh) -> None:
    """Give ``module`` (an attention) its rank's heads of the stack's position bias
    ``(B|1, H, T, S)``: the position scheme is replicated and computes all ``H``. The
    slice is a DTensor redistribution (``Replicate`` -> ``Shard(1)``), so the backward
    gathers every rank's heads of the bias's gradient: the replicated table (T5's
    buckets) gets the whole gradient on every rank, not its rank's heads only."""

    def hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        position = kwargs.get("position")
        bias = getattr(position, "bias", None)
        if bias is not None and bias.shape[1] == heads:
            whole = DTensor.from_local(bias, mesh, (Replicate(),), run_check=False)
            mine = whole.redistribute(mesh, (Shard(1),)).to_local()  # (B|1, H / tp, T, S)
            kwargs["position"] = dataclasses.replace(position, bias=mine)
        return args, kwargs

    module.register_forward_pre_hook(hook, with_kwargs=True)
