"""Batched augmentation (data.pipeline=batched) against the per-image torchvision transforms
(data.pipeline=per_sample): the same images for the same draws, the same distribution of draws,
and the same evaluation batches bit for bit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from burstsnn.ann.augment import cutout, flip, shift
from burstsnn.ann.data import SPECS, build_transform
from test_data import module
from datafiles import make_cifar_dataset, make_idx_dataset

SPEC = SPECS["fashion_mnist"]
PAD = 2
DRAWS = 3000
CHI2_49 = 85.35  # χ² at p = 0.999, 49 degrees of freedom (25 shifts × 2 flips − 1)


def distinct_image(size: int = 8) -> torch.Tensor:
    """uint8 [1, size, size] with every pixel different from every other and from 0."""
    return torch.randperm(250, generator=torch.Generator().manual_seed(0))[: size * size].add(1).to(
        torch.uint8).view(1, size, size)


def moved(image: torch.Tensor, dy: int, dx: int, mirrored: bool) -> torch.Tensor:
    """``image`` [C, H, W] flipped (after the shift), content moved by (dy, dx), 0 shifted in."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    out[:, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
        image[:, max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
    return out.flip(2) if mirrored else out


def outcome(view: torch.Tensor, image: torch.Tensor) -> tuple[int, int, bool]:
    """Which (dy, dx, flip) made ``view`` from ``image`` (each outcome is a different image)."""
    found = [(dy, dx, f) for dy in range(-PAD, PAD + 1) for dx in range(-PAD, PAD + 1) for f in (False, True)
             if torch.equal(view, moved(image, dy, dx, f))]
    assert len(found) == 1
    return found[0]


def chi2_uniform(counts: Counter, outcomes: int, draws: int) -> float:
    """Pearson's χ² of ``counts`` against ``outcomes`` equally likely outcomes."""
    expected = draws / outcomes
    return sum((c - expected) ** 2 / expected for c in counts.values()) + (outcomes - len(counts)) * expected


def test_each_shift_and_flip_moves_the_pixels_as_written():
    """shift with offset (top, left) moves content by (pad − top, pad − left); flip mirrors."""
    image = distinct_image()
    for top in range(2 * PAD + 1):
        for left in range(2 * PAD + 1):
            offsets = torch.tensor([[top, left]])
            got = flip(shift(image[None], PAD, offsets), torch.tensor([True]))[0]
            assert torch.equal(got, moved(image, PAD - top, PAD - left, True))


def test_batched_draws_have_the_per_image_distribution():
    """DRAWS views of one image: every (shift, flip) both ways, each about equally often."""
    image = distinct_image()
    per_image = v2.Compose([v2.RandomCrop(8, padding=PAD), v2.RandomHorizontalFlip()])
    torch.manual_seed(0)
    theirs = Counter(outcome(per_image(image), image) for _ in range(DRAWS))
    torch.manual_seed(1)
    ours = Counter(outcome(view, image) for view in flip(shift(image[None].expand(DRAWS, -1, -1, -1), PAD)))
    assert set(theirs) == set(ours) and len(ours) == (2 * PAD + 1) ** 2 * 2
    for counts in (theirs, ours):
        assert chi2_uniform(counts, len(ours), DRAWS) < CHI2_49


def test_cutout_corners_have_the_per_image_distribution():
    """Cutout's zeroed square (side 8 of 16) over DRAWS images: every corner inside the image,
    both ways, each about equally often."""
    ones = torch.ones(1, 16, 16)
    erase = v2.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0)

    def corner(view: torch.Tensor) -> tuple[int, int]:
        zero = (view[0] == 0).nonzero()
        assert len(zero) == 64 and int(zero[:, 0].max() - zero[:, 0].min()) == 7
        return int(zero[:, 0].min()), int(zero[:, 1].min())

    torch.manual_seed(0)
    theirs = Counter(corner(erase(ones)) for _ in range(DRAWS))
    torch.manual_seed(1)
    ours = Counter(corner(view) for view in cutout(ones[None].expand(DRAWS, -1, -1, -1)))
    assert set(theirs) == set(ours) == {(i, j) for i in range(9) for j in range(9)}
    for counts in (theirs, ours):
        assert chi2_uniform(counts, 81, DRAWS) < 124.8  # χ², 80 degrees of freedom, p = 0.999


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_evaluation_batches_are_the_same_in_both_pipelines(tmp_path: Path, name: str):
    if name == "cifar10":
        make_cifar_dataset(tmp_path, name, n_train=23, n_test=9)
    else:
        make_idx_dataset(tmp_path, n_train=40, n_test=12)
    batched = module(name, tmp_path, val_size=5, pipeline="batched")
    per_sample = module(name, tmp_path, val_size=5, pipeline="per_sample")
    for loader in ("val_dataloader", "test_dataloader", "calib_dataloader"):
        for (xa, ya), (xb, yb) in zip(getattr(batched, loader)(), getattr(per_sample, loader)(), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb), loader


def test_a_training_batch_is_the_per_image_transform_for_the_same_draws(tmp_path: Path):
    """Un-augmented (shift 0, no flip) the batched training images are the per-image ones."""
    make_idx_dataset(tmp_path, n_train=40, n_test=12)
    dm = module("fashion_mnist", tmp_path, val_size=5, pipeline="batched", augment=False)
    images, labels = dm.on_after_batch_transfer(dm.train_set.__getitems__(list(range(8))), 0)
    plain = build_transform(SPEC, 32, 28, train=True, augment=False)
    base = dm.train_set
    expected = torch.stack([plain(base.images[i][:, 2:30, 2:30]) for i in base.indices[:8]])
    assert torch.equal(images, expected) and labels.dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_same_draws_give_the_same_batch_on_cuda():
    """data.pipeline=batched augments on the training device: on a GPU the same draws give the
    same images as on the CPU."""
    from burstsnn.ann.augment import normalise

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    offsets, which = torch.randint(0, 9, (16, 2), generator=g), torch.rand(16, generator=g) < 0.5
    corners = torch.randint(0, 17, (16, 2), generator=g)
    spec = SPECS["cifar10"]

    def run(device: str) -> torch.Tensor:
        moved = flip(shift(images.to(device), 4, offsets.to(device)), which.to(device))
        return cutout(normalise(moved, spec.mean, spec.std), corners.to(device)).cpu()

    assert torch.equal(run("cpu"), run("cuda"))
