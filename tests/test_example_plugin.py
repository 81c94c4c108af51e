"""The example third-party plugin (plugins/example-plugin): installed with pip, found
through its entry point in a fresh interpreter, usable from a spec; its attention
checked against the definition written out naively."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plugins" / "example-plugin"
DIST = "txdsl-example-plugin"

SPEC = """\
model tiny_cosine {
  vocab = 101
  d_model = 32
  n_heads = 4
  layers = 2
  context = 64

  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }

  decoder(layers) {
    norm = layernorm(eps: 1e-5)
    attention = cosine(heads: n_heads, kv_heads: 2)
    ffn = mlp(hidden: 64, act: gelu)
    final_norm = layernorm(eps: 1e-5)
  }

  head = lm(tied: true)
}
"""


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DIST)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def installed():
    """pip-install the example into this venv (no deps: nothing may pull torch); uninstall after.

    A copy the developer installed beforehand is used as is and left in place.
    """
    if _installed():
        yield
        return
    proc = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(EXAMPLE))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    try:
        yield
    finally:
        _pip("uninstall", "-y", DIST)


def _txdsl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``txdsl ...`` in a fresh interpreter, so entry points are read anew."""
    env = {k: v for k, v in os.environ.items() if k not in ("TXDSL_PLUGINS",
                                                            "TXDSL_TRACE_PLUGINS")}
    return subprocess.run([sys.executable, "-m", "txdsl", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_pyproject_declares_the_entry_point_and_no_torch():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert meta["project"]["name"] == DIST
    assert meta["project"]["entry-points"]["txdsl"] == {"example": "txdsl_example"}
    assert meta["project"]["dependencies"] == ["txdsl"]


def test_txdsl_plugins_lists_the_installed_example(installed, tmp_path):
    proc = _txdsl("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    example = plugins["example"]
    assert example["ok"] and example["version"] == "0.1.0"
    assert example["module"] == "txdsl_example"
    assert example["registers"] == {"attention": {"cosine": ["reference"]}}
    assert plugins["attention"]["ok"]  # the built-ins are still there


def test_txdsl_build_uses_the_new_attention(installed, tmp_path):
    spec = tmp_path / "tiny_cosine.tx"
    spec.write_text(SPEC)
    proc = _txdsl("build", str(spec), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "  attention cosine -> reference (plugin example)" in proc.stdout
    assert "output: logits (2, 16, 101) float32" in proc.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["versions"]["plugins"]["example"] == "0.1.0"
    layer = manifest["ir"]["decoder"]["layers"][0]["attention"]
    assert (layer["kind"], layer["args"]["kv_heads"]) == ("cosine", 2)


# ---------------------------------------------------------------- the math


@pytest.fixture(scope="module")
def example():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import txdsl_example
    finally:
        sys.path.remove(str(EXAMPLE))
    return txdsl_example


def _attention(example, heads=4, kv_heads=None, d=32, temperature=None, context=64):
    from txdsl.sdk import BuildContext, Dims

    torch.manual_seed(0)
    args = example.CosineArgs(heads=heads, kv_heads=kv_heads, temperature=temperature)
    dims = Dims(d_model=d, width=d, embed_size=d, context=context)
    attn = example.CosineAttention.from_args(args, BuildContext(dims=dims)).eval()
    with torch.no_grad():  # distinct temperatures per head, so a head mix-up shows
        attn.temperature.copy_(torch.linspace(2.0, 9.0, heads))
    return attn, args, dims


def naive(attn, x, memory=None, *, causal=False, key_padding=None, bias=None, rotary=None):
    """The definition, one query, head and key at a time:
    out_i = sum_j softmax_j(g_h * cos(q_i, k_j) + bias_ij) v_j over the allowed keys."""
    B, T, _ = x.shape
    src = x if memory is None else memory
    S = src.shape[1]
    H, Hkv, hd = attn.heads, attn.kv_heads, attn.head_dim
    q = attn.q_proj(x).view(B, T, H, hd)
    k = attn.k_proj(src).view(B, S, Hkv, hd)
    v = attn.v_proj(src).view(B, S, Hkv, hd)
    if rotary is not None:  # (cos, sin) (T, hd): RoPE on q and k, per position
        from txdsl.sdk.positions import apply_rotary

        cos, sin = rotary
        q = apply_rotary(q.transpose(1, 2), cos, sin).transpose(1, 2)
        k = apply_rotary(k.transpose(1, 2), cos, sin).transpose(1, 2)
    out = torch.zeros(B, T, H, hd)
    for b in range(B):
        for h in range(H):
            kv = h // (H // Hkv)
            for i in range(T):
                scores = []
                for j in range(S):
                    allowed = (not causal or j <= i + S - T) and \
                        (key_padding is None or bool(key_padding[b, j]))
                    cos = torch.dot(q[b, i, h], k[b, j, kv]) / (
                        q[b, i, h].norm() * k[b, j, kv].norm())
                    s = attn.temperature[h] * cos + (bias[0, h, i, j] if bias is not None else 0)
                    scores.append(s if allowed else torch.tensor(-math.inf))
                w = torch.softmax(torch.stack(scores), dim=0)
                out[b, i, h] = sum(w[j] * v[b, j, kv] for j in range(S))
    return attn.out_proj(out.reshape(B, T, H * hd))


def _mask(**kw):
    from txdsl.sdk.attention import AttentionMask

    return AttentionMask(**kw)


@torch.no_grad()
@pytest.mark.parametrize("kv_heads", [None, 2])
def test_matches_the_definition_with_causal_and_padding_masks(example, kv_heads):
    attn, _, _ = _attention(example, kv_heads=kv_heads)
    x = torch.randn(2, 5, 32)
    # no query may lose every key: the naive softmax over nothing is NaN
    pad = torch.tensor([[True] * 5, [True, True, True, False, False]])
    for kw in ({}, {"causal": True}, {"key_padding": pad}, {"causal": True, "key_padding": pad}):
        got = attn(x, mask=_mask(**kw))
        want = naive(attn, x, **kw)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=str(kw))


@torch.no_grad()
def test_position_bias_and_qk_transform_are_honoured(example):
    from txdsl.sdk import PositionContext

    attn, _, _ = _attention(example)
    x = torch.randn(1, 4, 32)
    angles = torch.arange(4.0)[:, None] * torch.linspace(0.3, 1.1, 4)  # (T, hd/2)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    bias = torch.randn(1, 4, 4, 4)
    positions = torch.arange(4)[None]
    ctx = PositionContext(positions, positions, rotary=(cos[None, None], sin[None, None]),
                          bias=bias)
    got = attn(x, mask=_mask(causal=True), position=ctx)
    want = naive(attn, x, causal=True, bias=bias, rotary=(cos, sin))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_kv_cache_decoding_equals_the_full_pass(example):
    attn, _, _ = _attention(example, kv_heads=1)
    x = torch.randn(2, 6, 32)
    full = attn(x, mask=_mask(causal=True))
    state = attn.new_state(2, 8)  # a preallocated (B, H_kv, 8, hd) buffer: shapes never change
    steps = [attn(x[:, :3], mask=_mask(causal=True, q_slots=torch.arange(3)), cache=state)]
    for t in range(3, 6):
        steps.append(attn(x[:, t:t + 1], mask=_mask(causal=True, q_slots=torch.tensor([t])),
                          cache=state))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert state.k.shape == (2, 1, 8, 8)


@torch.no_grad()
def test_cross_attention_over_memory_with_a_cache(example):
    from txdsl.sdk import CrossKV

    attn, _, _ = _attention(example)
    x, memory = torch.randn(1, 3, 32), torch.randn(1, 7, 32)
    want = naive(attn, x, memory)
    torch.testing.assert_close(attn(x, memory, mask=_mask()), want, rtol=1e-5, atol=1e-5)
    cache = CrossKV()
    attn(x[:, :1], memory, mask=_mask(), cache=cache)
    again = attn(x, torch.zeros_like(memory), mask=_mask(), cache=cache)  # memory from cache
    torch.testing.assert_close(again, want, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_scores_are_bounded_by_the_temperature(example):
    """Scaling q and k changes nothing: the point of query-key normalisation."""
    attn, _, _ = _attention(example)
    x = torch.randn(1, 5, 32)
    before = attn(x, mask=_mask(causal=True))
    attn.q_proj.weight.mul_(100.0)
    attn.q_proj.bias.mul_(100.0)
    torch.testing.assert_close(attn(x, mask=_mask(causal=True)), before, rtol=1e-4, atol=1e-5)


def test_arguments_parameters_and_initial_temperature(example):
    from txdsl.sdk import ArgError

    attn, args, dims = _attention(example, kv_heads=2)
    assert args.param_count(dims) == sum(p.numel() for p in attn.parameters())
    assert args.initial_temperature(dims) == pytest.approx(math.log2(64 * 64 - 64))
    fresh = example.CosineAttention.from_args(
        example.CosineArgs(heads=4, temperature=7.5),
        __import__("txdsl.sdk", fromlist=["BuildContext"]).BuildContext(dims=dims))
    assert torch.all(fresh.temperature == 7.5)
    with pytest.raises(ArgError, match="learns its scale") as err:
        example.CosineArgs(heads=4, scale=0.5).check(dims)
    assert err.value.arg == "scale"
    with pytest.raises(ValueError):
        example.CosineArgs(heads=4, temprature=1.0)  # extra="forbid": typos are errors
