"""Training augmentation for a whole batch at once, on the device the batch is on.

The same draws as the per-image torchvision transforms of ``data.build_transform``, made
for every image of the batch in one go: a shift of up to ±``crop_padding`` pixels (zero
padding, then a crop at a uniform offset, as ``RandomCrop(size, padding)``), a horizontal
flip with probability ½, and optionally Cutout (one zeroed square of side S/2, lying fully
inside the image, after normalisation, as ``RandomErasing(p=1, scale=(¼, ¼), ratio=(1, 1))``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF


def normalise(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 ``[B, C, H, W]`` -> float32, scaled to [0, 1] and normalised per channel (the same
    operations as ``ToDtype(float32, scale=True)`` + ``Normalize`` on one image)."""
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), list(mean), list(std))


def shift(images: Tensor, padding: int, offsets: Tensor | None = None) -> Tensor:
    """``[B, C, H, W]`` -> the same size, each image shifted: zero-padded by ``padding`` on every
    side and cropped at offsets ``[B, 2]`` (top, left) in [0, 2·padding], drawn uniformly
    when None."""
    batch, channels, height, width = images.shape
    if offsets is None:
        offsets = torch.randint(0, 2 * padding + 1, (batch, 2), device=images.device)
    padded = F.pad(images, (padding,) * 4)
    rows = (offsets[:, 0, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (offsets[:, 1, None] + torch.arange(width, device=images.device))[:, None, None, :]
    b = torch.arange(batch, device=images.device)[:, None, None, None]
    c = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[b, c, rows, cols]


def flip(images: Tensor, which: Tensor | None = None) -> Tensor:
    """``[B, C, H, W]``: images with ``which`` ``[B]`` (bool; each with probability ½ when None)
    mirrored left to right."""
    if which is None:
        which = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(which[:, None, None, None], images.flip(3), images)


def cutout(x: Tensor, corners: Tensor | None = None) -> Tensor:
    """``[B, C, H, W]``: each image with one square of side round(√(H·W/4)) set to 0, its top-left
    corner ``corners`` ``[B, 2]`` drawn uniformly among the positions inside the image."""
    batch, _, height, width = x.shape
    side_h = side_w = int(round(math.sqrt(height * width / 4)))
    if corners is None:
        corners = torch.stack([torch.randint(0, height - side_h + 1, (batch,), device=x.device),
                               torch.randint(0, width - side_w + 1, (batch,), device=x.device)], 1)
    rows = torch.arange(height, device=x.device)[None, :] - corners[:, :1]  # [B, H]
    cols = torch.arange(width, device=x.device)[None, :] - corners[:, 1:]
    inside = ((rows >= 0) & (rows < side_h))[:, :, None] & ((cols >= 0) & (cols < side_w))[:, None, :]
    return x.masked_fill(inside[:, None], 0.0)


def augment(
    images: Tensor, mean: Sequence[float], std: Sequence[float], *, crop_padding: int, hflip: bool,
    with_cutout: bool,
) -> Tensor:
    """A training batch, uint8 ``[B, C, H, W]`` -> float32 ``[B, C, H, W]``: shifted (when
    ``crop_padding`` > 0), flipped (when ``hflip``), normalised, then Cutout (``with_cutout``)."""
    if crop_padding > 0:
        images = shift(images, crop_padding)
    if hflip:
        images = flip(images)
    x = normalise(images, mean, std)
    return cutout(x) if with_cutout else x
