"""Shared by the benchmark scripts: model construction, weight copying, timing, results.

Nothing here measures on import. Every script runs its comparison in one
process, so the numbers it reports are *ratios* between implementations
measured side by side under the same thread settings, not absolute speeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
RESULTS = ROOT / "bench" / "results"

for _p in (str(ROOT), str(ROOT / "plugins")):  # run from a checkout without installing
    if _p not in sys.path:
        sys.path.append(_p)


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class GPT2Shape:
    """A GPT-2-shaped decoder: the overrides of ``specs/gpt2.tx`` and of ``GPT2Config``."""

    layers: int = 6
    d_model: int = 512
    heads: int = 8
    vocab: int = 8192
    context: int = 256

    @classmethod
    def full(cls) -> "GPT2Shape":
        """GPT-2 small, as in ``specs/gpt2.tx``."""
        return cls(layers=12, d_model=768, heads=12, vocab=50257, context=1024)

    def spec(self) -> str:
        """txdsl spec text: GPT-2 from ``specs/gpt2.tx`` via ``extends``, resized."""
        return (
            'import "gpt2.tx"\n'
            "model bench_gpt2 extends gpt2 {\n"
            f"  layers = {self.layers}; d_model = {self.d_model}; heads = {self.heads}\n"
            f"  vocab = {self.vocab}; context = {self.context}\n"
            "}\n"
        )


def txdsl_path() -> str:
    """Where the txdsl being measured was imported from (a before/after run names its tree)."""
    import txdsl

    return txdsl.__file__


def add_shape_args(p: argparse.ArgumentParser, default: GPT2Shape | None = None) -> None:
    d = default or GPT2Shape()
    g = p.add_argument_group("model shape (default: a small GPT-2 this CPU runs quickly)")
    g.add_argument("--layers", type=int, default=d.layers)
    g.add_argument("--d-model", type=int, default=d.d_model)
    g.add_argument("--heads", type=int, default=d.heads)
    g.add_argument("--vocab", type=int, default=d.vocab)
    g.add_argument("--context", type=int, default=d.context)
    g.add_argument("--full", action="store_true",
                   help="GPT-2 small (12 layers, 768 wide, 12 heads, vocab 50257, context 1024); "
                        "overrides the shape flags")


def shape_from_args(args: argparse.Namespace) -> GPT2Shape:
    if args.full:
        return GPT2Shape.full()
    return GPT2Shape(layers=args.layers, d_model=args.d_model, heads=args.heads,
                     vocab=args.vocab, context=args.context)


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: every core, os.cpu_count())")
    p.add_argument("--quick", action="store_true", help="a smaller grid and fewer repetitions")
    p.add_argument("--check-only", action="store_true",
                   help="build the models and check they agree; no timing, no results written")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="results name (bench/results/<name>.json/.md); default: the script's")


def set_threads(n: int | None) -> int:
    """Fix torch's intra-op threads (and one inter-op thread); returns the count used."""
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started
        pass
    return torch.get_num_threads()


# ---------------------------------------------------------------- models


def build_txdsl(shape: GPT2Shape, *, backend: str = "eager", seed: int = 0,
                force_kernels: dict[str, str] | None = None,
                options: dict[str, Any] | None = None):
    """``txdsl.build`` of the resized ``specs/gpt2.tx`` (no artifact written)."""
    import txdsl

    return txdsl.build(shape.spec(), base_dir=str(SPECS), backend=backend, seed=seed,
                       force_kernels=force_kernels, options=options, progress=False)


def hf_gpt2(shape: GPT2Shape, *, seed: int = 0, attn: str = "sdpa"):
    """``transformers.GPT2LMHeadModel`` of the same shape, dropout off, eval mode.

    ``attn``: Hugging Face's attention implementation (``sdpa``, its default on
    CPU, or ``eager``, its naive one).
    """
    import torch
    import transformers

    config = transformers.GPT2Config(
        vocab_size=shape.vocab, n_positions=shape.context, n_embd=shape.d_model,
        n_layer=shape.layers, n_head=shape.heads, n_inner=4 * shape.d_model,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    config._attn_implementation = attn
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = transformers.GPT2LMHeadModel(config)
    return model.eval()


def copy_hf_to_txdsl(hf, module) -> None:
    """Load HF's weights into a built txdsl GPT-2 (strict; ``txdsl.interop``'s mapping),
    keeping the LM head tied."""
    from txdsl.interop import load_hf_weights

    load_hf_weights(module, hf)
    assert module.embedding.tokens.weight is module.heads.lm.weight, "LM head no longer tied"


def param_count(module) -> int:
    """Distinct parameters (a tied weight counts once)."""
    seen, n = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


def token_ids(batch: int, seq: int, vocab: int, seed: int = 0):
    import torch

    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], Any]], *, reps: int, warmup: int = 1,
                min_seconds: float = 0.0) -> dict[str, list[float]]:
    """Time every function ``reps`` times, interleaved: round ``r`` runs them all,
    starting with the ``r``-th (A,B,C / B,C,A / ...), so a slow drift of the machine
    (thermal, another process) spreads over all of them instead of hitting one.

    ``warmup`` untimed rounds first. ``min_seconds``: keep adding rounds (up to
    ``3 * reps``) until the total timed seconds reach it, for very fast calls.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    r = 0
    while r < reps or (r < 3 * reps and sum(map(sum, times.values())) < min_seconds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(timed(fns[name]))
        r += 1
    return times


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, min, and the interquartile range relative to the median (noise)."""
    s = sorted(samples)
    med = statistics.median(s)
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        iqr = (q[2] - q[0]) / med if med else 0.0
    else:
        iqr = (s[-1] - s[0]) / med if med else 0.0
    return {"median_s": med, "min_s": s[0], "iqr_rel": iqr, "n": len(s)}


# ---------------------------------------------------------------- results


def environment(threads: int | None = None) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }
    from importlib import metadata

    for mod, dist in (("transformers", "transformers"), ("x_transformers", "x-transformers"),
                      ("txdsl", "txdsl")):
        try:
            env[mod] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[mod] = None
    try:
        env["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> an ordinary file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """``bench/results/<name>.json`` and ``.md``, each written atomically."""
    js, md = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    _atomic_write(js, json.dumps(data, indent=2, default=_jsonable) + "\n")
    _atomic_write(md, markdown.rstrip() + "\n")
    return js, md


def _jsonable(o: Any) -> Any:
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, headers)) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def env_line(env: dict[str, Any]) -> str:
    load = env.get("loadavg_1_5_15")
    return (f"torch {env['torch']}, transformers {env.get('transformers')}, "
            f"{env['torch_threads']} intra-op thread(s), {env['cpu_count']} CPU(s) ({env['cpu']})"
            + (f", load average {load[0]:.1f} at the end (the benchmark's own threads included)"
               if load else ""))


# ---------------------------------------------------------------- peers (bench/vs_peers.py)


def machine_limits(quick: bool = False, dtypes: Sequence[str] = ("float32", "bfloat16"),
                   reps: int = 5) -> dict[str, Any]:
    """What this machine can do at best, measured now: a square GEMM's rate per dtype
    (GFLOP/s, the best of ``reps``) and a large copy's bandwidth (GB/s, bytes read +
    written, the best of ``reps``). Each result is later reported as a fraction of these."""
    import torch

    n = 256 if quick else 2048
    out: dict[str, Any] = {"gemm_n": n, "gemm_gflops": {}}
    for name in dtypes:
        dt = getattr(torch, name)
        a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
        a @ b
        best = min(timed(lambda: a @ b) for _ in range(reps))
        out["gemm_gflops"][name] = round(2 * n ** 3 / best / 1e9, 1)
    src = torch.randn((1 << 20) if quick else (1 << 26))  # 4 MiB / 256 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(timed(lambda: dst.copy_(src)) for _ in range(reps))
    out["copy_gbps"] = round(2 * src.numel() * 4 / best / 1e9, 2)
    out["copy_bytes"] = src.numel() * 4
    return out


def matmul_weight_elements(module) -> int:
    """Elements of every matrix a forward multiplies by (``nn.Linear`` weights and
    Hugging Face's ``Conv1D``; a tied LM head counts, as it is read): the dense FLOPs
    per token are twice this, and a decode step reads them all once."""
    from torch import nn

    n, seen = 0, set()
    for m in module.modules():
        w = getattr(m, "weight", None)
        if w is None or id(w) in seen or w.dim() != 2:
            continue
        if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D":
            seen.add(id(w))
            n += w.numel()
    return n


@dataclass(frozen=True)
class BertShape:
    """A BERT-shaped encoder: the overrides of ``specs/bert.tx``'s ``bert`` (BertModel)."""

    layers: int = 12
    d_model: int = 768
    heads: int = 12
    vocab: int = 30522
    context: int = 512

    def spec(self) -> str:
        return ('import "bert.tx"\n'
                "model bench_bert extends bert {\n"
                f"  layers = {self.layers}; d_model = {self.d_model}; heads = {self.heads}\n"
                f"  vocab = {self.vocab}; context = {self.context}\n"
                "}\n")


def hf_bert(shape: BertShape, *, seed: int = 0):
    """``transformers.BertModel`` (with its pooler) of ``shape``, dropout off, SDPA, eval."""
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=shape.vocab, hidden_size=shape.d_model, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=4 * shape.d_model,
        hidden_act="gelu", max_position_embeddings=shape.context, type_vocab_size=2,
        layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = transformers.BertModel(config)
    return model.eval()


def hf_llama(*, quick: bool = False, seed: int = 0):
    """A LLaMA-style ``LlamaForCausalLM`` of about 1.1B parameters (TinyLlama's shape:
    22 layers, 2048 wide, 32 heads over 4 key/value heads, SwiGLU 5632, vocab 32000),
    random weights; ``quick``: a tiny one of the same kind."""
    import torch
    import transformers

    dims = (dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=512)
            if quick else
            dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                 num_attention_heads=32, num_key_value_heads=4, vocab_size=32000))
    config = transformers.LlamaConfig(**dims, max_position_embeddings=2048,
                                      tie_word_embeddings=False, bos_token_id=0,
                                      eos_token_id=0, pad_token_id=0)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    return model.eval()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``path`` gets ``data`` whole or not at all (a temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
