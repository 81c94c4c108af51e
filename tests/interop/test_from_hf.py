"""``from_hf`` of a Hugging Face model and of its saved directory give HF's outputs (with
padding), decoders generate HF's tokens, and ``to_hf`` gives back identical tensors that
``from_pretrained`` loads: for every supported architecture, two or more configs each."""

from __future__ import annotations

import pytest
import torch

import txdsl
from hf_models import CONFIGS, make, untie_t5

ATOL = 1e-4
CASES = [pytest.param((kind, i), id=f"{kind}-{i}")
         for kind in CONFIGS for i in range(len(CONFIGS[kind]))]
CASES.append(pytest.param(("t5_untied", 0), id="t5_untied-0"))


def build_hf(kind: str, i: int):
    if kind == "t5_untied":
        hf, inputs = make("t5_v1_1", 0)
        return untie_t5(hf), inputs
    return make(kind, i)


@pytest.fixture(scope="module", params=CASES)
def case(request, tmp_path_factory):
    kind, i = request.param
    hf, inputs = build_hf(kind, i)
    d = tmp_path_factory.mktemp(f"{kind}{i}")
    hf.save_pretrained(d)
    spec, ours = txdsl.from_hf(hf)
    spec_dir, ours_dir = txdsl.from_hf(str(d))
    return dict(kind=kind, hf=hf, inputs=inputs, spec=spec, ours=ours, spec_dir=spec_dir,
                ours_dir=ours_dir, dir=d)


def batch(case, seed: int = 1):
    """Keyword inputs with padding (right for encoders, left for decoders) and the mask of
    the real positions of the output."""
    hf, kind = case["hf"], case["inputs"]
    g = torch.Generator().manual_seed(seed)
    c = hf.config
    if kind == "image":
        return dict(pixel_values=torch.randn(3, c.num_channels, c.image_size, c.image_size,
                                             generator=g)), None
    V, B, T = c.vocab_size, 3, 11
    x = torch.randint(3, V, (B, T), generator=g)
    mask = torch.ones_like(x)
    if kind == "decoder":  # left padding, positions counted from the first real token
        mask[1, :4] = 0
        mask[2, :7] = 0
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return dict(input_ids=x, attention_mask=mask, position_ids=pos), mask.bool()
    mask[1, 8:] = 0
    mask[2, 3:] = 0
    if kind == "roberta":
        x = x.masked_fill(mask == 0, c.pad_token_id)
    if kind.startswith("xlnet"):  # segments, a factorisation order, the query stream's targets
        types = torch.zeros_like(x)
        types[:, 6:] = 1
        perm = (torch.rand(B, T, T, generator=g) < 0.4).float()
        kw = dict(input_ids=x, attention_mask=mask, token_type_ids=types, perm_mask=perm)
        if kind == "xlnet_query":
            targets = torch.tensor([0, 2, 5, 9])
            mapping = torch.zeros(B, len(targets), T)
            mapping[:, torch.arange(len(targets)), targets] = 1.0
            perm[:, :, targets] = 1.0  # targets are hidden from everyone (pre-training)
            kw["target_mapping"] = mapping
        return kw, mask.bool()
    if kind == "seq2seq":
        d = torch.randint(2, V, (B, 7), generator=g)
        return dict(input_ids=x, attention_mask=mask, decoder_input_ids=d), None
    types = torch.zeros_like(x)
    if getattr(c, "type_vocab_size", 1) > 1:
        types[:, 5:] = 1
        return dict(input_ids=x, attention_mask=mask, token_type_ids=types), mask.bool()
    return dict(input_ids=x, attention_mask=mask), mask.bool()


def outputs(out, hf: bool):
    """The tensors to compare: logits, else the last hidden state and the pooled output."""
    base = hf and not hasattr(out, "logits") or not hf and set(out.heads) <= {"pooler"}
    if not base:
        return [out.logits]
    pooled = getattr(out, "pooler_output", None) if hf else out.heads.get("pooler")
    return [out.last_hidden_state] + ([] if pooled is None else [pooled])


def compare(case, module):
    kw, real = batch(case)
    with torch.no_grad():
        ours, theirs = outputs(module(**kw), False), outputs(case["hf"](**kw), True)
    worst = 0.0
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        if real is not None and a.dim() >= 2 and a.shape[:2] == real.shape:
            a, b = a[real], b[real]
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0.0)
        worst = max(worst, (a - b).abs().max().item())
    return worst


def test_from_model_matches_hf(case):
    compare(case, case["ours"])


def test_from_directory_matches_hf(case):
    compare(case, case["ours_dir"])
    assert case["spec_dir"] == case["spec"]


def test_spec_extends_the_zoo(case):
    spec = case["spec"]
    assert spec.startswith('import "zoo:')
    assert " extends " in spec and len(spec.strip().splitlines()) <= 9, spec
    ir = txdsl.parse(spec)
    assert ir.name == "imported"


def test_tying_read_from_the_weights(tmp_path):
    """transformers 5.24's T5Config claims a tied head for v1.1; the weights say otherwise
    (an instance's head is another tensor; a directory stores lm_head.weight)."""
    hf, _ = build_hf("t5_untied", 0)
    assert hf.config.tie_word_embeddings is False
    hf.save_pretrained(tmp_path)
    for source in (hf, str(tmp_path)):
        spec, ours = txdsl.from_hf(source)
        assert "lm(tied: false)" in spec
        assert ours.heads["lm"].weight is not ours.embedding.tokens.weight
    tied, _ = make("t5_v1_1", 0)  # the config's default: one tensor in memory, one key on disk
    assert "lm(tied: true)" in txdsl.from_hf(tied).spec


def test_round_trip_identical(case, tmp_path):
    from safetensors import safe_open

    config, state = txdsl.to_hf(case["ours_dir"], tmp_path)
    with safe_open(str(case["dir"] / "model.safetensors"), "pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    legacy = getattr(case["hf"].config, "legacy", True)
    if not legacy:  # DeBERTa's lm_predictions head is exported as the legacy cls.predictions
        saved = {k.replace("lm_predictions.lm_head.", "cls.predictions.transform.")
                 .replace("transform.bias", "bias"): v for k, v in saved.items()}
    assert set(state) == set(saved)
    for k, v in state.items():
        assert torch.equal(v, saved[k]), k
    reloaded = type(case["hf"]).from_pretrained(tmp_path).eval()
    reloaded.config._attn_implementation = "eager"
    if case["kind"] != "t5_untied":  # from_pretrained re-ties that head (HF's T5 config)
        compare(dict(case, hf=reloaded), case["ours"])


@pytest.mark.parametrize("kind, i", [(k, i) for k in ("gpt2", "llama", "mistral", "qwen2")
                                     for i in range(2)] + [("llama", 2), ("llama", 3)])
def test_greedy_generation_left_padded(kind, i):  # llama 2, 3: llama3 and yarn rope scaling
    hf, _ = make(kind, i)
    _, ours = txdsl.from_hf(hf)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(1, hf.config.vocab_size, (3, 6), generator=g)
    mask = torch.ones_like(x)
    mask[1, :3] = 0
    mask[2, :1] = 0
    x = x.masked_fill(mask == 0, 0)
    with torch.no_grad():
        expected = hf.generate(x, attention_mask=mask, max_new_tokens=20, do_sample=False,
                               pad_token_id=0, eos_token_id=None)
        got = ours.generate(x, 20, attention_mask=mask)
    assert got.shape == (3, 26)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("untied", [False, True])
def test_t5_greedy_generation_left_padded_encoder_input(untied):
    hf = untie_t5(make("t5_v1_1", 1)[0]) if untied else make("t5_v1_1", 0)[0]
    _, ours = txdsl.from_hf(hf)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(2, hf.config.vocab_size, (3, 8), generator=g)
    mask = torch.ones_like(x)
    mask[1, :3] = 0
    mask[2, :1] = 0
    with torch.no_grad():
        expected = hf.generate(x, attention_mask=mask, max_new_tokens=20, min_new_tokens=20,
                               do_sample=False, eos_token_id=None)
        got = ours.generate(x, 20, attention_mask=mask, decoder_start_token_id=0)
    assert got.shape == (3, 21)  # the decoder start token, then 20
    assert torch.equal(got, expected)
