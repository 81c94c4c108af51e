"""What each process runs (``dist_launch.spawn``); every check returns measured numbers,
which the tests assert on, so a failure shows by how much.

Every rank builds the single-process reference and the model it shards from the same
spec and seed, so the reference is the same on every rank.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

import txdsl
from txdsl.parallel import init_mesh, load_sharded, parallelize, save_sharded

from dist_specs import SPECS


def build(name: str, seed: int = 0):
    return txdsl.build(SPECS[name], seed=seed).module


def inputs(name: str, seed: int, batch: int = 2, T: int = 12) -> dict:
    g = torch.Generator().manual_seed(seed)
    vocab = build_vocab(name)
    out = {"input_ids": torch.randint(0, vocab, (batch, T), generator=g)}
    if name == "t5":
        out["decoder_input_ids"] = torch.randint(0, vocab, (batch, T - 3), generator=g)
    return out


def build_vocab(name: str) -> int:
    return {"gpt2": 97, "llama": 101, "t5": 67, "mqa": 101, "bert": 89}[name]


def loss_of(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(**batch).logits  # (B, T, vocab)
    target = batch.get("decoder_input_ids", batch["input_ids"]).roll(-1, dims=1)
    return logits, F.cross_entropy(logits.flatten(0, 1), target.flatten())


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def local_bytes(model) -> int:
    """Bytes of this rank's own parameter shards (a tied parameter once)."""
    return sum((p.to_local() if isinstance(p, DTensor) else p).numel() * p.element_size()
               for p in model.parameters())


def grad_diffs(model, ref) -> dict[str, float]:
    mine = dict(model.named_parameters())
    return {n: (full(mine[n].grad) - p.grad).abs().max().item()
            for n, p in ref.named_parameters()}


def tp_fsdp_checkpoint(rank: int, world: int, out: Path) -> dict:
    mesh = init_mesh(tp=world)
    dp = init_mesh(fsdp=world)
    results = {}
    for name in SPECS:
        r: dict = {}
        ref, model = build(name), build(name)
        parallelize(model, mesh, tp="tp")
        batch = inputs(name, seed=1)
        ref_logits, ref_loss = loss_of(ref, batch)
        logits, loss = loss_of(model, batch)
        r["forward"] = (logits - ref_logits).abs().max().item()
        ref_loss.backward()
        loss.backward()
        r["grads"] = grad_diffs(model, ref)
        r["grad_scale"] = max(p.grad.abs().max().item() for p in ref.parameters())
        r["tied"] = any(p is model.embedding.tokens.weight for p in model.heads.parameters())
        r["param_bytes"] = local_bytes(model)
        prompt = batch["input_ids"][:, :5]
        extra = {"decoder_start_token_id": 0} if name == "t5" else {}
        if name != "bert":  # an encoder doesn't generate
            with torch.no_grad():
                r["generate"] = [model.generate(prompt, 6, **extra).tolist(),
                                 ref.generate(prompt, 6, **extra).tolist()]
        # checkpoint: saved from the TP model; loaded into TP and FSDP2 models of another seed
        where = out / f"ckpt_{name}"
        save_sharded(model, where)
        with torch.no_grad():
            again = parallelize(build(name, seed=7), mesh, tp="tp")
            load_sharded(again, where)
            r["ckpt_tp"] = (again(**batch).logits - ref_logits).abs().max().item()
            sharded = parallelize(build(name, seed=7), dp, fsdp="dp")
            load_sharded(sharded, where)
            r["ckpt_fsdp"] = (sharded(**batch).logits - ref_logits).abs().max().item()
        if rank == 0:
            from safetensors.torch import save_file

            save_file({"logits": ref_logits.detach().contiguous(), **batch},
                      str(out / f"ref_{name}.safetensors"))
        # FSDP2: each rank its own batch; gradients == the single process's mean over ranks
        ref, model = build(name), build(name)
        parallelize(model, dp, fsdp="dp")
        mine = inputs(name, seed=10 + rank)
        loss_of(model, mine)[1].backward()
        ref_total = sum(loss_of(ref, inputs(name, seed=10 + k))[1] for k in range(world))
        (ref_total / world).backward()
        r["fsdp_grads"] = grad_diffs(model, ref)
        r["fsdp_param_bytes"] = local_bytes(model)
        results[name] = r
    return results


def two_d(rank: int, world: int, out: Path) -> dict:
    """tp 2 x fsdp 2 on 4 processes: data split over ``dp``, heads over ``tp``."""
    mesh = init_mesh(tp=2, fsdp=world // 2)
    dp_rank = mesh["dp"].get_local_rank()
    results = {}
    for name in ("gpt2", "llama", "mqa"):
        ref, model = build(name), build(name)
        parallelize(model, mesh, tp="tp", fsdp="dp")
        loss_of(model, inputs(name, seed=10 + dp_rank))[1].backward()
        n = world // 2
        (sum(loss_of(ref, inputs(name, seed=10 + k))[1] for k in range(n)) / n).backward()
        results[name] = {"grads": grad_diffs(model, ref), "param_bytes": local_bytes(model),
                         "tied": model.heads.lm.weight is model.embedding.tokens.weight}
    return results
