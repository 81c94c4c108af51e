"""ViT patch embedding (Dosovitskiy et al. 2021, "An Image is Worth 16x16
Words", https://arxiv.org/abs/2010.11929, section 3.1).

The image is cut into ``size`` x ``size`` patches, each flattened and
projected linearly to the embedding width E; a ``Conv2d(channels, E,
kernel_size=size, stride=size)`` named ``projection`` does both at once, as
in HF ``ViTPatchEmbeddings`` (weights copy across unchanged).
``pixel_values (B, C, H, W)`` -> ``(B, N, E)`` with N = (image / size)^2,
patches in row-major order.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, PatchesArgs


class ConvPatchesArgs(PatchesArgs):
    """ViT patch embedding (Dosovitskiy et al. 2021): non-overlapping conv, one token per patch."""

    size: PositiveInt  # patch side, pixels
    channels: PositiveInt = Field(default=3, description="input image channels")
    image: PositiveInt  # image side, pixels (square images)

    def check(self, dims: Dims) -> None:
        if self.image % self.size:
            raise ArgError(f"image ({self.image}) is not divisible by the patch size ({self.size})",
                           arg="size", hint="pick a patch size dividing the image side")

    def num_patches(self) -> int:
        return (self.image // self.size) ** 2

    def param_count(self, dims: Dims) -> int:
        return self.channels * self.size ** 2 * dims.embed_size + dims.embed_size

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * self.channels * self.size ** 2 * dims.embed_size  # per patch


class PatchEmbedding(nn.Module):
    def __init__(self, *, projection: nn.Conv2d, image: int):
        super().__init__()
        self.projection = projection
        self.image = image
        self.channels = projection.in_channels
        self.num_patches = (image // projection.kernel_size[0]) ** 2

    @classmethod
    def from_args(cls, args: ConvPatchesArgs, ctx: BuildContext) -> "PatchEmbedding":
        args.check(ctx.dims)
        conv = nn.Conv2d(args.channels, ctx.dims.embed_size, kernel_size=args.size,
                         stride=args.size)
        return cls(projection=conv, image=args.image)

    def forward(self, pixel_values: Tensor) -> Tensor:
        _, c, h, w = pixel_values.shape
        if c != self.channels:
            raise ValueError(f"pixel_values have {c} channels, this patch embedding expects "
                             f"{self.channels}")
        if (h, w) != (self.image, self.image):
            raise ValueError(f"pixel_values are {h}x{w}, this patch embedding was built for "
                             f"{self.image}x{self.image} images")
        x = self.projection(pixel_values)  # (B, E, H/size, W/size)
        return x.flatten(2).transpose(1, 2)  # (B, N, E)
