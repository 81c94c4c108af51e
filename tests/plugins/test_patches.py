"""The ViT patch embedding against its definition and HF ViTPatchEmbeddings."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import txdsl_embeddings
from txdsl.plugins import load_registry
from txdsl.sdk import ArgError, BuildContext, Dims

REGISTRY = load_registry({"embeddings": txdsl_embeddings})
E = 24


def build(embed_size: int = E, **args) -> nn.Module:
    impl = REGISTRY.implementations("patches", "conv")[0]
    dims = Dims(d_model=embed_size, width=embed_size, embed_size=embed_size)
    return impl.build(impl.args(**args), BuildContext(dims=dims))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("image, size, channels", [(32, 8, 3), (12, 4, 1), (8, 8, 2)])
def test_matches_hf_vit(image, size, channels):
    from transformers import ViTConfig
    from transformers.models.vit.modeling_vit import ViTPatchEmbeddings

    patches = build(image=image, size=size, channels=channels)
    assert [n for n, _ in patches.named_parameters()] == ["projection.weight", "projection.bias"]
    ref = ViTPatchEmbeddings(ViTConfig(image_size=image, patch_size=size, num_channels=channels,
                                       hidden_size=E))
    ref.load_state_dict(patches.state_dict())
    assert patches.num_patches == ref.num_patches == (image // size) ** 2
    pixels = torch.randn(2, channels, image, image)
    out = patches(pixels)
    assert out.shape == (2, patches.num_patches, E)
    torch.testing.assert_close(out, ref(pixels), atol=1e-5, rtol=1e-5)


def test_is_a_linear_map_of_flattened_patches():
    patches = build(image=12, size=4, channels=2)
    pixels = torch.randn(3, 2, 12, 12)
    # cut into 4x4 patches in row-major order, flatten each as (C, p, p), project
    cut = pixels.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, 3, 3, 4, 4)
    flat = cut.permute(0, 2, 3, 1, 4, 5).reshape(3, 9, 2 * 16)  # (B, N, C*p*p)
    w = patches.projection.weight.reshape(E, -1)
    expected = flat @ w.T + patches.projection.bias
    torch.testing.assert_close(patches(pixels), expected, atol=1e-5, rtol=1e-5)


def test_num_patches_and_check():
    conv = REGISTRY.args("patches", "conv")
    dims = Dims(d_model=E, width=E, embed_size=E)
    assert conv(image=224, size=16).num_patches() == 196
    assert conv(image=224, size=16).channels == 3
    message = r"image \(30\) is not divisible by the patch size \(8\)"
    with pytest.raises(ArgError, match=message) as err:
        conv(image=30, size=8).check(dims)
    assert err.value.arg == "size"
    with pytest.raises(ArgError):
        build(image=30, size=8)
    with pytest.raises(ValidationError):
        conv(size=16)  # image is required
    with pytest.raises(ValidationError):
        conv(image=224, size=16, patch=16)


def test_wrong_inputs_are_named():
    patches = build(image=16, size=4, channels=3)
    with pytest.raises(ValueError, match="1 channels, this patch embedding expects 3"):
        patches(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="20x16"):
        patches(torch.randn(1, 3, 20, 16))


def test_bf16():
    patches = build(image=16, size=4)
    pixels = torch.randn(2, 3, 16, 16)
    low = patches.to(torch.bfloat16)(pixels.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), patches.float()(pixels), atol=5e-2, rtol=5e-2)
