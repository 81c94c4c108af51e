"""``txdsl generate`` as a user runs it: a real subprocess, the ids it prints, its refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import txdsl

ROOT = Path(__file__).resolve().parents[2]
DECODER = """
model tiny_gpt2 {
  vocab = 96
  d_model = 32
  heads = 2
  layers = 2
  context = 64

  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }

  decoder(layers) {
    residual = pre
    norm = layernorm(eps: 1e-5)
    attention = full(heads: heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu_tanh)
    final_norm = layernorm(eps: 1e-5)
  }

  head = lm(tied: true)
}
"""
ENCODER = """
model tiny_bert {
  vocab = 96
  d_model = 32
  heads = 2
  layers = 1
  context = 64

  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }

  encoder(layers) {
    residual = post
    norm = layernorm(eps: 1e-12)
    attention = full(heads: heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu)
  }

  head = mlm(tied: true)
}
"""


def txdsl_generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "txdsl", "generate", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("specs")
    (d / "decoder.tx").write_text(DECODER)
    (d / "encoder.tx").write_text(ENCODER)
    return d


def ids_of(r: subprocess.CompletedProcess) -> list[int]:
    assert r.returncode == 0, r.stderr
    return [int(t) for t in r.stdout.strip().split(",")]


def test_spec_and_artifact_print_the_tokens_generate_makes(specs, tmp_path):
    built = txdsl.build(str(specs / "decoder.tx"), seed=7, output=tmp_path / "art",
                        progress=False)
    prompt = torch.tensor([[5, 17, 42]])
    want = built.generate(prompt, 12)[0].tolist()
    assert ids_of(txdsl_generate(str(specs / "decoder.tx"), "--prompt-ids", "5,17,42",
                                 "--max-new-tokens", "12", "--seed", "7")) == want
    assert ids_of(txdsl_generate(str(tmp_path / "art"), "--prompt-ids", "5, 17, 42",
                                 "--max-new-tokens", "12")) == want
    g = torch.Generator().manual_seed(3)
    sampled = txdsl.build(str(specs / "decoder.tx"), seed=3, progress=False).generate(
        prompt, 12, do_sample=True, top_k=10, temperature=2.0, generator=g)[0].tolist()
    assert ids_of(txdsl_generate(str(specs / "decoder.tx"), "--prompt-ids", "5,17,42",
                                 "--max-new-tokens", "12", "--seed", "3", "--do-sample",
                                 "--top-k", "10", "--temperature", "2.0")) == sampled


@pytest.mark.parametrize("spec, args, status, message", [
    ("decoder.tx", ["--prompt-ids", "1,96"], 1, "96 is not in the vocabulary of tiny_gpt2 "
     "(96 ids: 0..95)"),
    ("decoder.tx", ["--prompt-ids", ""], 2, "the prompt is empty"),
    ("decoder.tx", ["--prompt-ids", "1,two"], 2, "'two' is not a token id"),
    ("encoder.tx", ["--prompt-ids", "1,2"], 1, "tiny_bert is encoder-only"),
    ("decoder.tx", ["--prompt-ids", "1,2", "--max-new-tokens", "63"], 1,
     "the model's context is 64"),
])
def test_refusals_are_one_line_errors(specs, spec, args, status, message):
    if "--max-new-tokens" not in args:
        args = [*args, "--max-new-tokens", "4"]
    r = txdsl_generate(str(specs / spec), *args)
    assert r.returncode == status, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
