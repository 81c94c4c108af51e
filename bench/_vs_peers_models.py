"""The models ``bench/vs_peers.py`` compares: one family (GPT-2, BERT, LLaMA) at one dtype,
Hugging Face's model with every txdsl build of it, and x-transformers' equivalent."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C


class Family:
    """One architecture at one dtype: the HF model and every txdsl build of it."""

    def __init__(self, name: str, dtype: str, quick: bool, seed: int):
        import torch

        self.name, self.dtype, self.quick, self.seed = name, dtype, quick, seed
        self.key = "last_hidden_state" if name == "bert" else "logits"  # what is compared
        self.torch_dtype = getattr(torch, dtype)
        if name == "gpt2":
            self.shape: Any = (C.GPT2Shape(layers=2, d_model=64, heads=4, vocab=512, context=128)
                               if quick else C.GPT2Shape.full())
            hf, self.spec = C.hf_gpt2(self.shape, seed=seed), self.shape.spec()
        elif name == "bert":
            self.shape = (C.BertShape(layers=2, d_model=64, heads=4, vocab=512, context=128)
                          if quick else C.BertShape())
            hf, self.spec = C.hf_bert(self.shape, seed=seed), self.shape.spec()
        else:  # llama
            from txdsl.interop import from_hf

            hf = C.hf_llama(quick=quick, seed=seed)
            self.spec, self.shape = from_hf(hf).spec, None
        _scale_up(hf, seed)
        self.matmul_elements = C.matmul_weight_elements(hf)
        self.hf_fp32 = hf
        self.hf = hf if dtype == "float32" else _copy_to(hf, self.torch_dtype)
        self.layers = hf.config.num_hidden_layers
        self.width = hf.config.hidden_size
        self.vocab = hf.config.vocab_size
        self._weights = Path(tempfile.mkdtemp(prefix="vs_peers_")) / "weights.safetensors"
        self._builds: dict[str, Any] = {}
        self.build_seconds: dict[str, float] = {}  # what each txdsl.build took (the JSON's)

    def weights_file(self) -> Path:
        """HF's weights in txdsl's layout (what ``txdsl.build(weights=...)`` loads)."""
        if not self._weights.exists():
            from txdsl.back.weights import save_weights

            built = self.build("eager", dtype="float32", load=False)
            from txdsl.interop import load_hf_weights

            load_hf_weights(built.module, self.hf_fp32)
            save_weights(built.module, self._weights)
        return self._weights

    def build(self, backend: str, *, dtype: str | None = None, load: bool = True,
              **kw: Any) -> Any:
        """``txdsl.build`` of this family's spec with HF's weights (from the weights file,
        so a backend that compiles while building, aot, sees them)."""
        import txdsl

        key = f"{backend}:{dtype}:{sorted(kw.items())}:{load}"
        if key not in self._builds:
            weights = str(self.weights_file()) if load else None
            start = time.perf_counter()
            self._builds[key] = txdsl.build(self.spec, base_dir=str(C.SPECS), backend=backend,
                                            dtype=dtype or self.dtype, seed=self.seed,
                                            weights=weights, progress=False, **kw)
            label = " ".join([backend, *(f"{k}={v}" for k, v in sorted(kw.items()))])
            self.build_seconds[label] = round(time.perf_counter() - start, 2)
        return self._builds[key]


def _scale_up(hf: Any, seed: int) -> None:
    """Larger random weights than HF's 0.02 init, so a wrong mapping or op shows."""
    import torch

    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _copy_to(hf: Any, dtype: Any) -> Any:
    import copy

    return copy.deepcopy(hf).to(dtype)


def xt_model(fam: Family) -> Any:
    """x-transformers' equivalent (its own weights): GPT-2 as bench/xtransformers_forward.py;
    BERT as a post-norm encoder returning embeddings; LLaMA as rotary + SwiGLU + RMSNorm."""
    import torch
    from torch import nn
    from x_transformers import Decoder, Encoder, TransformerWrapper

    with torch.random.fork_rng():
        torch.manual_seed(fam.seed)
        if fam.name == "gpt2":
            import xtransformers_forward as XT

            model = XT.xt_model(fam.shape, True, fam.seed)
        elif fam.name == "bert":
            s = fam.shape
            model = TransformerWrapper(
                num_tokens=s.vocab, max_seq_len=s.context, emb_dropout=0.0,
                attn_layers=Encoder(dim=s.d_model, depth=s.layers, heads=s.heads,
                                    pre_norm=False, attn_flash=True, ff_mult=4,
                                    ff_custom_activation=nn.GELU()))
            model = _Embeddings(model)
        else:
            c = fam.hf.config
            model = TransformerWrapper(
                num_tokens=c.vocab_size, max_seq_len=c.max_position_embeddings,
                use_abs_pos_emb=False,
                attn_layers=Decoder(dim=c.hidden_size, depth=c.num_hidden_layers,
                                    heads=c.num_attention_heads,
                                    attn_kv_heads=c.num_key_value_heads, rotary_pos_emb=True,
                                    use_rmsnorm=True, ff_swish=True, ff_glu=True,
                                    ff_no_bias=True, attn_flash=True))
    return model.eval().to(fam.torch_dtype)


class _Embeddings:
    def __init__(self, model: Any):
        self.model = model

    def __call__(self, ids: Any) -> Any:
        return self.model(ids, return_embeddings=True)

    def eval(self) -> "_Embeddings":
        self.model.eval()
        return self

    def to(self, dtype: Any) -> "_Embeddings":
        self.model.to(dtype)
        return self


