"""XLNet and DeBERTa-v2 checkpoints that don't fit are refused naming what doesn't: an
incomplete directory names the keys, a config the mapping can't express names the value;
and ``import-hf`` -> ``build --weights`` gives HF's logits from the command line."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

import txdsl
from hf_models import CONFIGS, make
from txdsl.interop import MappingError


def drop_keys(directory, *needles: str) -> list[str]:
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    gone = [k for k in tensors if any(n in k for n in needles)]
    save_file({k: v for k, v in tensors.items() if k not in gone}, str(path),
              metadata={"format": "pt"})
    return gone


def test_untied_xlnet_without_its_head_is_refused(tmp_path):
    hf, _ = make("xlnet", 1)  # tie_word_embeddings=False
    hf.save_pretrained(tmp_path)
    assert drop_keys(tmp_path, "lm_loss.weight") == ["lm_loss.weight"]
    with pytest.raises(MappingError, match=r"missing keys: lm_loss\.weight"):
        txdsl.from_hf(str(tmp_path))


def test_deberta_v2_without_pos_key_proj_is_refused(tmp_path):
    hf, _ = make("deberta", 1)  # v2: pos_key_proj / pos_query_proj
    hf.save_pretrained(tmp_path)
    gone = drop_keys(tmp_path, "layer.1.attention.self.pos_key_proj")
    assert len(gone) == 2
    with pytest.raises(MappingError) as err:
        txdsl.from_hf(str(tmp_path))
    assert all(k in str(err.value) for k in gone)


@pytest.mark.parametrize("kind,change,named", [
    ("xlnet", dict(same_length=True), "same_length = True"),
    ("xlnet", dict(attn_type="uni"), "attn_type = 'uni'"),
    ("deberta", dict(position_biased_input=True), "position_biased_input = True"),
    ("deberta", dict(relative_attention=False), "relative_attention = False"),
])
def test_unsupported_config_values_are_named(kind, change, named):
    cls, kwargs, _ = CONFIGS[kind][0]
    config = cls.config_class(**{**kwargs, **change})
    hf = cls(config).eval()
    with pytest.raises(MappingError, match=named.replace("(", r"\(")):
        txdsl.from_hf(hf)


def test_cli_import_then_build_gives_hf_logits(tmp_path):
    from txdsl.cli.main import main

    hf, _ = make("deberta", 0)
    hf.save_pretrained(tmp_path / "hf")
    spec, weights = tmp_path / "model.tx", tmp_path / "weights.safetensors"
    assert main(["import-hf", str(tmp_path / "hf"), "-o", str(spec)]) == 0
    model = txdsl.build(str(spec), weights=str(weights), progress=False).module.eval()
    x = torch.randint(1, hf.config.vocab_size, (2, 13), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x).logits, hf(input_ids=x).logits,
                                   atol=1e-4, rtol=0.0)
