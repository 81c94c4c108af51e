"""Run a function in ``world`` processes on this machine: gloo, localhost, a free port.

Each process initialises ``torch.distributed`` (gloo), runs ``fn(rank, world, out, *args)``
with one intra-op thread, and writes what it returns as ``out/<rank>.json``; the caller
reads them back (:func:`spawn` returns them in rank order). Processes are forked from
the test process (torch is imported once); a failure in one raises here with its traceback.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable, world: int, port: int, out: str, args: tuple) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = fn(rank, world, Path(out), *args)
        Path(out, f"{rank}.json").write_text(json.dumps(result))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, world: int, out: Path, *args: Any) -> list[dict]:
    import torch.multiprocessing as mp

    out.mkdir(parents=True, exist_ok=True)
    mp.start_processes(_entry, args=(fn, world, free_port(), str(out), args), nprocs=world,
                       start_method="fork")
    return [json.loads((out / f"{r}.json").read_text()) for r in range(world)]
