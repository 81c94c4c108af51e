"""Train a spec'd model with tensor parallelism and FSDP2, under ``torchrun``.

    torchrun --nproc-per-node 2 examples/train_fsdp_tp.py                 # CPU, gloo: tp 2
    torchrun --nproc-per-node 2 examples/train_fsdp_tp.py --tp 1          # FSDP2 over 2
    torchrun --nproc-per-node 8 examples/train_fsdp_tp.py SPEC --tp 4 --device cuda
                                                          # GPUs, nccl: tp 4 x fsdp 2

The world is a ``(fsdp, tp)`` mesh (``fsdp = world / tp``): heads, FFN units and the
vocabulary split over ``tp`` (the plan each kind declares, ``txdsl show SPEC --tp N
--explain``), layers sharded over ``fsdp``. Every rank builds the model from the same seed
(``parallelize`` scatters rank 0's weights anyway); each data-parallel rank trains on its
own batches of a copy task (``[a b c ... | a b c ...]``: the second half repeats the
first), tensor-parallel ranks of one group on the same ones. ``--save DIR`` writes a
sharded safetensors checkpoint (``txdsl.parallel.save_sharded``) that loads at any world
size. The split is checked from the spec before the process group is formed (an
indivisible ``--tp`` is a located error, exit 1).

The CUDA/nccl path is documented, not tested here (the project's tests run on CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

import txdsl
from txdsl.parallel import check_parallel, init_mesh, parallelize, save_sharded
from txdsl.plugins import get_registry

HERE = Path(__file__).resolve().parent


def copy_batch(vocab: int, batch: int, half: int, generator: torch.Generator,
               device: str) -> torch.Tensor:
    """``(batch, 2 * half)`` token ids whose second half repeats the first."""
    first = torch.randint(1, vocab, (batch, half), generator=generator)
    return torch.cat([first, first], dim=1).to(device)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(HERE / "tiny_llama.tx"))
    p.add_argument("--tp", type=int, default=2, help="tensor-parallel size (divides the world)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8, help="rows per data-parallel rank")
    p.add_argument("--half", type=int, default=16, help="tokens to copy per row")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--save", type=Path, help="write a sharded checkpoint here at the end")
    args = p.parse_args()

    ir = txdsl.parse_file(args.spec)
    try:  # before any process group exists: an indivisible split is the spec's error
        check_parallel(ir, get_registry(), tp=args.tp)
    except txdsl.SpecError as err:
        print(err.render(), file=sys.stderr)
        return 1
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world % args.tp:
        print(f"the world ({world} processes) is not divisible by --tp {args.tp}",
              file=sys.stderr)
        return 1
    device = args.device
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank()
    mesh = init_mesh(tp=args.tp, fsdp=world // args.tp, device=device)
    model = txdsl.build(ir, seed=0, device=device).module.train()
    if world > 1:  # one process: the model as built (the reference run)
        parallelize(model, mesh, tp="tp" if args.tp > 1 else None,
                    fsdp="dp" if world // args.tp > 1 else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    data = torch.Generator().manual_seed(1000 + mesh["dp"].get_local_rank())
    vocab = ir.embedding.tokens
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        ids = copy_batch(vocab, args.batch, args.half, data, device)
        logits = model(input_ids=ids).logits  # (B, 2 * half, vocab), whole on every rank
        # the loss over the second half (predictable), each position predicting the next
        pred, target = logits[:, args.half - 1:-1], ids[:, args.half:]
        loss = F.cross_entropy(pred.flatten(0, 1), target.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if rank == 0 and (step == 1 or step % 10 == 0 or step == args.steps):
            print(f"step {step:4d}  loss {loss.item():.4f}  ({time.perf_counter() - start:.1f} s)",
                  flush=True)
    if args.save is not None:
        save_sharded(model, args.save)
        if rank == 0:
            print(f"saved {args.save}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
