"""Weight-only quantization of a built model, and what it costs in accuracy.

``txdsl build --quantize int8-weight`` (``txdsl.build(..., quantize="int8-weight")``)
replaces, after construction, every ``nn.Linear`` outside the embedding (the
attention projections, the feed-forward, the heads' dense layers) and every LM
head's projection with a module holding integer weights; activations stay in the
build's dtype (float32 or bfloat16):

- ``int8-weight``: symmetric, one scale per output channel,
  ``W ~ q * s[:, None]`` with ``q`` int8 in [-127, 127] and ``s = max|W_row| / 127``;
  a call with few rows (``<= PACK_ROWS``: decoding) runs PyTorch's CPU kernel
  ``torch._weight_int8pack_mm``, one with more (a prompt, a forward over a batch)
  converts the int8 matrix to the activation dtype and runs the float GEMM
  (``(x @ q.T) * s``: the same product). The kernel is vectorised for bfloat16
  activations only (measured on a 2-core AVX-512 Xeon, 1 x 768 x 50257: float32
  activations 30 ms, bfloat16 2.6 ms, float32 dense 7 ms), so in a float32 build
  those few rows are rounded to bfloat16 for the kernel and its output cast back.
  Many rows would make the kernel slower than the float GEMM (128 x 768 x 3072:
  6.1 ms vs 2.5 ms); the conversion costs one pass over the int8 matrix.
- ``int4-weight``: asymmetric, groups of ``group_size`` input channels,
  ``W ~ (q - 8) * scale + zero`` with ``q`` in [0, 15]; packed by
  ``torch._convert_weight_to_int4pack_for_cpu`` and run by
  ``torch._weight_int4pack_mm_for_cpu`` (the layout torchao's CPU int4 path uses).

The token embedding, positions and norms are untouched. A head *tied* to the token
embedding gets its own integer copy of the shared matrix: the lookup keeps reading
the float table (a few rows per token), the head's matmul, the largest of a decoding
step, reads the integer one. Biases stay in the build's dtype.

:func:`accuracy` measures the cost on a fixed input against the float32 model (max
|logit| difference, top-1 agreement); the build records it in the manifest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..errors import did_you_mean
from .artifact import QuantizationInfo
from .backends import BuildError

if TYPE_CHECKING:
    from ..ir import ModelIR
    from ..registry import Registry

SCHEMES = ("int8-weight", "int4-weight")
PACK_ROWS = 32  # at most this many rows (B*T) run the int8 kernel; more: convert + float GEMM
INT4_GROUPS = (128, 64, 32)  # the largest that divides in_features is used
QUANTIZABLE_BACKENDS = ("eager", "inductor", "aot")


def unknown_scheme(scheme: str) -> str:
    """The error for an unknown scheme, with the closest known one (``int8`` -> ``int8-weight``)."""
    hint = did_you_mean(scheme, SCHEMES, "known")
    if "did you mean" not in (hint or ""):
        word = scheme.split("-")[0].lower()
        close = [s for s in SCHEMES if s.startswith(word)] or [SCHEMES[0]]  # int3: int8
        hint = f"did you mean '{close[0]}'? (known: {', '.join(SCHEMES)})"
    return f"unknown quantization '{scheme}'; {hint}"


def check_scheme(scheme: str | None, *, device: str, backend: str) -> None:
    """Refuse, before any work, an unknown scheme or one this device or backend can't run."""
    if scheme is None:
        return
    if scheme not in SCHEMES:
        raise BuildError(unknown_scheme(scheme))
    if device != "cpu":
        kernel = "torch._weight_int8pack_mm" if scheme == "int8-weight" else \
            "torch._weight_int4pack_mm_for_cpu"
        raise BuildError(f"--quantize {scheme} runs on CPU only here ({kernel} is a CPU kernel; "
                         f"no {device} kernel is wired in); build with --device cpu")
    if backend not in QUANTIZABLE_BACKENDS:
        raise BuildError(f"--quantize {scheme} is not supported by backend '{backend}' (its "
                         f"exporter has no integer weight-only matmul); use one of "
                         f"{', '.join(QUANTIZABLE_BACKENDS)}")


# ---------------------------------------------------------------- modules


class Int8Linear(nn.Module):
    """``y = x @ (q * s[:, None]).T + b``: int8 weights (N, K), one scale per output channel."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dtype: torch.dtype):
        super().__init__()
        w = weight.detach().float()  # (N, K); scales from full precision
        self.out_features, self.in_features = w.shape
        scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)  # (N,)
        q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", q.contiguous())
        self.register_buffer("scales", scales.to(dtype))
        # the kernel's scales, in the dtype of the activations it is given (bfloat16 when
        # the build is float32: see the module docstring)
        self.register_buffer("kernel_scales", scales.to(torch.bfloat16 if dtype == torch.float32
                                                        else dtype))
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(dtype),
                                                           requires_grad=False)

    def dequantized(self) -> Tensor:
        return self.weight_int8.float() * self.scales.float()[:, None]  # (N, K)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (B*T, K)
        # torch.export traces one graph for every batch and length: the general path
        if x2.shape[0] <= PACK_ROWS and not torch.compiler.is_exporting():
            scales = self.kernel_scales
            y = torch._weight_int8pack_mm(x2.to(scales.dtype).contiguous(), self.weight_int8,
                                          scales).to(x.dtype)  # (B*T, N)
        else:
            y = nn.functional.linear(x2, self.weight_int8.to(x.dtype)) * self.scales
        y = y.reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int4Linear(nn.Module):
    """``y = x @ W.T + b`` with ``W[n, g*G:(g+1)*G] = (q - 8) * scale[g, n] + zero[g, n]``.

    The packing wants output channels in multiples of 16: others (GPT-2's vocabulary,
    50257) get zero rows, and the output is cut back to ``out_features``.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, dtype: torch.dtype, group_size: int):
        super().__init__()
        w = weight.detach().float()
        self.out_features, self.in_features, self.group_size = w.shape[0], w.shape[1], group_size
        w = torch.nn.functional.pad(w, (0, 0, 0, -w.shape[0] % 16))  # (N padded to 16, K)
        N, K = w.shape
        groups = w.reshape(N, K // group_size, group_size)  # (N, K/G, G)
        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-12)  # (N, K/G, 1)
        q = torch.round((groups - low) / scale).clamp(0, 15).to(torch.int32).reshape(N, K)
        zero = low + 8 * scale  # the kernel computes (q - 8) * scale + zero
        scale_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1)  # (K/G, N, 2)
        self.register_buffer("weight_int4", torch._convert_weight_to_int4pack_for_cpu(q, 1))
        self.register_buffer("scale_zeros", scale_zeros.to(dtype).contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(dtype),
                                                           requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        y = torch._weight_int4pack_mm_for_cpu(x.reshape(-1, self.in_features).contiguous(),
                                              self.weight_int4, self.group_size,
                                              self.scale_zeros)  # (B*T, N padded)
        if y.shape[-1] != self.out_features:
            y = y[:, :self.out_features]
        y = y.reshape(*lead, self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int4, group_size={self.group_size}")


class QuantLMHead(nn.Module):
    """An LM head over a quantized projection: ``linear(hidden * scale)``."""

    def __init__(self, linear: nn.Module, scale: float):
        super().__init__()
        self.linear, self.scale = linear, scale

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if self.scale != 1.0:
            hidden = hidden * self.scale
        return self.linear(hidden)  # (B, T, d) -> (B, T, vocab)


# ---------------------------------------------------------------- the pass


def _lm_head_type() -> type | None:
    try:
        from txdsl_heads.lm import LMHead
    except ImportError:  # the built-in heads plugin is not installed
        return None
    return LMHead


def _int4_group(in_features: int) -> int | None:
    return next((g for g in INT4_GROUPS if in_features % g == 0), None)


def quantize_model(model: nn.Module, scheme: str, dtype: torch.dtype) -> dict[str, Any]:
    """Replace ``model``'s linear layers in place (see the module docstring).

    Returns ``{"scheme", "modules", "skipped", "weights_quantized", "kernel"}``. A module
    referenced from several places (shared layers) is replaced once, everywhere.
    """
    lm_head = _lm_head_type()
    replaced: dict[int, nn.Module] = {}
    skipped: list[str] = []
    quantized = 0

    def make(name: str, weight: Tensor, bias: Tensor | None) -> nn.Module | None:
        if scheme == "int8-weight":
            return Int8Linear(weight, bias, dtype)
        group = _int4_group(weight.shape[1])
        if group is None:
            skipped.append(f"{name}: in_features {weight.shape[1]} is not a multiple of "
                           f"{min(INT4_GROUPS)}")
            return None
        return Int4Linear(weight, bias, dtype, group)

    for parent_name, parent in list(model.named_modules(remove_duplicate=False)):
        if parent_name == "embedding" or parent_name.startswith("embedding."):
            continue
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if name == "embedding":
                continue
            if id(child) in replaced:
                setattr(parent, child_name, replaced[id(child)])
                continue
            if isinstance(child, nn.Linear):
                new = make(name, child.weight, child.bias)
            elif lm_head is not None and isinstance(child, lm_head):
                linear = make(name, child.weight, child.bias)
                new = None if linear is None else QuantLMHead(linear, child.scale)
            else:
                continue
            if new is None:
                continue
            new.to(child.weight.device)
            replaced[id(child)] = new
            quantized += child.weight.numel()
            setattr(parent, child_name, new)
    kernel = ("torch._weight_int8pack_mm" if scheme == "int8-weight"
              else "torch._weight_int4pack_mm_for_cpu")
    return {"scheme": scheme, "modules": len(replaced), "skipped": skipped,
            "weights_quantized": quantized, "kernel": kernel}


# ---------------------------------------------------------------- the cost


def fixed_inputs(ir: "ModelIR", registry: "Registry", device: str, dtype: str,
                 ) -> dict[str, Tensor]:
    """The input the accuracy cost is measured on: batch 2, the default length, seed 1234."""
    from .inputs import example_inputs

    return example_inputs(ir, registry, batch=2, device=device, dtype=dtype, seed=1234)


def _main_output(out: Any) -> tuple[str, Tensor]:
    from .backends import output_tensors

    tensors = output_tensors(out)
    name = "logits" if "logits" in tensors else next(iter(tensors))
    return name, tensors[name]


@torch.no_grad()
def accuracy(reference: nn.Module, model: Any, inputs: dict[str, Tensor],
             reference_inputs: dict[str, Tensor] | None = None) -> dict[str, Any]:
    """Max |difference| and top-1 agreement of ``model``'s main output against ``reference``'s."""
    name, want = _main_output(reference(**(reference_inputs or inputs)))
    _, got = _main_output(model(**inputs))
    want, got = want.float(), got.float()
    top1 = None
    if name == "logits" and want.ndim >= 2:
        top1 = (want.argmax(-1) == got.argmax(-1)).float().mean().item()
    return {"max_logit_diff": (want - got).abs().max().item(),
            "max_abs_logit": want.abs().max().item(), "top1_agreement": top1,
            "measured_on": {k: list(v.shape) for k, v in inputs.items()}}


def summary(info: QuantizationInfo) -> str:
    """One line for ``txdsl build``: what was quantized and the measured cost."""
    top1 = "n/a" if info.top1_agreement is None else f"{100 * info.top1_agreement:.1f}%"
    rel = info.max_logit_diff / info.max_abs_logit if info.max_abs_logit else 0.0
    return (f"quantized {info.modules} layers to {info.scheme} ({info.kernel}); vs float32 on a "
            f"fixed input: max |logit diff| {info.max_logit_diff:.4g} ({100 * rel:.2f}% of max "
            f"|logit| {info.max_abs_logit:.3g}), top-1 agreement {top1}")


def info_from(stats: dict[str, Any], cost: dict[str, Any], model: nn.Module) -> QuantizationInfo:
    return QuantizationInfo(scheme=stats["scheme"], kernel=stats["kernel"],
                            modules=stats["modules"], skipped=stats["skipped"],
                            weights_quantized=stats["weights_quantized"],
                            weights_float=sum(p.numel() for p in model.parameters()), **cost)

