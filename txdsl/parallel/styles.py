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

import torch
import torch.distributed as dist
from torch import Tensor, nn
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


class _TakeHeads(torch.autograd.Function):
    """Forward: this rank's ``[start, stop)`` channels of a replicated projection's output.
    Backward: the gradient put back in place (zeros elsewhere) and summed over the
    tensor-parallel group, so the replicated projection gets the whole gradient (every
    rank's heads) on every rank."""

    @staticmethod
    def forward(ctx, x: Tensor, start: int, stop: int, group: Any) -> Tensor:
        ctx.start, ctx.stop, ctx.group, ctx.width = start, stop, group, x.shape[-1]
        return x[..., start:stop]

    @staticmethod
    def backward(ctx, grad: Tensor):
        whole = grad.new_zeros(*grad.shape[:-1], ctx.width)
        whole[..., ctx.start:ctx.stop] = grad
        dist.all_reduce(whole, group=ctx.group)
        return whole, None, None, None


def take_kv_group(projection: nn.Module, kv_heads: int, mesh: DeviceMesh) -> None:
    """A replicated K or V projection ``(B, T, kv_heads * hd)`` keeps the head this rank's
    query heads read: ``rank * kv_heads // tp`` (``tp`` a multiple of ``kv_heads``)."""
    tp, rank, group = mesh.size(), mesh.get_local_rank(), mesh.get_group()
    head = rank * kv_heads // tp

    def hook(mod: nn.Module, args: tuple, out: Tensor) -> Tensor:
        hd = out.shape[-1] // kv_heads
        return _TakeHeads.apply(out, head * hd, (head + 1) * hd, group)  # (B, T, hd)

    projection.register_forward_hook(hook)
