"""LightningDataModule for the image data sets, offline first.

``ImageDataModule(**cfg.data)`` reads the files under ``root`` and never touches the network unless
``download=True``. Every image reaches the network as ``[C, image_size, image_size]`` float32,
normalised with the data set's mean/std; labels are int64. With ``pipeline="batched"`` the
training loader yields uint8 batches, augmented and normalised on the training device by
``on_after_batch_transfer``; every other loader yields the normalised images themselves.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset
from torchvision import datasets as tvd
from torchvision.transforms import v2

from burstsnn.ann.augment import augment as augment_batch
from burstsnn.ann.batched import BatchedImages, as_batch
from burstsnn.ann.datasets import (
    find_cifar_dir,
    find_idx_dir,
    load_cifar_split,
    load_idx_split,
    load_image_folder,
)
from burstsnn.errors import DatasetError
from burstsnn.rules import check, check_choice

__all__ = ["ImageDataModule", "SPECS", "DatasetSpec", "build_transform"]


@dataclass(frozen=True)
class DatasetSpec:
    """Fixed facts of one data set."""

    title: str
    in_channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool  # horizontal flips are label-preserving (not for digits)
    default_root: str
    fix: str  # how to get the data, for the "not found" message


_IDX_FIX = "set data.root=<dir with the IDX files>, or set data.download=true"
SPECS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        "Fashion-MNIST", 1, 10, (0.2860,), (0.3530,), True,
        "/usr/share/datasets/fashion-mnist",
        "install it with `apt-get install dataset-fashion-mnist`, " + _IDX_FIX,
    ),
    "mnist": DatasetSpec(
        "MNIST", 1, 10, (0.1307,), (0.3081,), False, "data/mnist", _IDX_FIX
    ),
    "cifar10": DatasetSpec(
        "CIFAR-10", 3, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
        "data/cifar10",
        "set data.root=<dir holding cifar-10-batches-py>, or set data.download=true",
    ),
    "cifar100": DatasetSpec(
        "CIFAR-100", 3, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
        "data/cifar100",
        "set data.root=<dir holding cifar-100-python>, or set data.download=true",
    ),
    "imagenet": DatasetSpec(
        "ImageNet", 3, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True,
        "data/imagenet",
        "set data.root=<dir with train/ and val/, one sub-folder per class> "
        "(ImageNet cannot be downloaded automatically)",
    ),
}
_TORCHVISION = {  # name -> (torchvision class, folder under root it downloads into)
    "fashion_mnist": (tvd.FashionMNIST, "FashionMNIST"),
    "mnist": (tvd.MNIST, "MNIST"),
    "cifar10": (tvd.CIFAR10, None),
    "cifar100": (tvd.CIFAR100, None),
}


def to_size(image_size: int, source_size: int | None) -> list[Any]:
    """The transforms that bring a ``[..., C, s, s] uint8`` tensor (or a PIL image when
    ``source_size`` is None) to ``image_size``: smaller squares zero-padded (28 -> 32 keeps pixels
    exact), larger or PIL ones resized and center-cropped. They work on a batch as on one image."""
    if source_size is None:
        return [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()]
    if source_size < image_size:
        before = (image_size - source_size) // 2
        after = image_size - source_size - before
        return [v2.Pad([before, before, after, after])]
    if source_size > image_size:
        return [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return []


def _files_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and mtime of every file in ``folder``: what ``_image_tensors`` is keyed by."""
    return tuple((p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in sorted(folder.iterdir()))


@functools.lru_cache(maxsize=4)
def _image_tensors(folder: Path, name: str, train: bool, num_classes: int, image_size: int | None,
                   stamp: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of a tensor data set: images ``[N, C, s, s]`` uint8 (brought to ``image_size``
    with ``to_size`` unless it is None) and labels ``[N]`` int64. Kept for the next jobs of the
    process (a sweep's) while ``stamp`` (``_files_stamp``) is unchanged; nothing modifies them."""
    if name in ("cifar10", "cifar100"):
        images, labels = load_cifar_split(folder, name, train, num_classes)
    else:
        images, labels = load_idx_split(folder, train, num_classes)
    if images.shape[-1] != images.shape[-2]:
        raise DatasetError(f"{folder}: images are {tuple(images.shape[-2:])}, expected square")
    for step in to_size(image_size, images.shape[-1]) if image_size is not None else ():
        images = step(images)
    return images, labels


def build_transform(
    spec: DatasetSpec,
    image_size: int,
    source_size: int | None,
    train: bool,
    augment: bool = False,
    autoaugment: bool = False,
    cutout: bool = False,
    crop_padding: int = 4,
) -> v2.Compose:
    """Image transform: ``[C, s, s] uint8`` tensor (or a PIL image when
    ``source_size`` is None) -> ``[C, image_size, image_size]`` float32, normalised.

    First ``to_size``. Training only (``train=True``):
    ``augment`` = RandomCrop(image_size, padding=crop_padding) (shifts of up to
    ±crop_padding pixels) + horizontal flip where the data set allows it; ``autoaugment`` = AutoAugment with the CIFAR10 policy;
    ``cutout`` = one zeroed square of side image_size/2 after normalisation, done
    with ``RandomErasing`` (unlike the original Cutout, the square always lies
    fully inside the image).
    """
    steps = to_size(image_size, source_size)
    if train and augment:
        steps.append(v2.RandomCrop(image_size, padding=crop_padding))
        if spec.hflip:
            steps.append(v2.RandomHorizontalFlip())
    if train and autoaugment:
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)]
    if train and cutout:
        steps.append(v2.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0))
    return v2.Compose(steps)


class _Transformed(Dataset):
    """``(transform(image), label)`` for ``base[i]``, ``i`` in ``indices``."""

    def __init__(self, base: Dataset, indices: torch.Tensor, transform: v2.Compose) -> None:
        self.base, self.indices, self.transform = base, indices.tolist(), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        image, label = self.base[self.indices[i]]
        return self.transform(image), label


# With data.limit_train_samples, at most this fraction (1/n) of those images is held out.
VAL_SHARE_OF_LIMIT = 10
log = logging.getLogger(__name__)


class ImageDataModule(pl.LightningDataModule):
    """Train / val / test / calibration loaders for one image data set.

    Batches are ``(images: [B, C, image_size, image_size] float32, labels: [B] int64)``.
    The first ``limit_train_samples`` official training images (all when None) are
    split into ``val_size`` held-out validation images (at most a tenth of them when
    ``limit_train_samples`` is set; chosen by a generator
    seeded with ``split_seed``) and the training split; ``val_size=0`` means no
    validation (``val_dataloader`` returns ``[]``, which Lightning skips). What jobs are
    tested on (``test_dataloader``) is the official test set, or with ``eval_split="val"`` the
    held-out validation images (to choose knobs on images that are not the test set); the first
    ``limit_test_samples`` of them.
    """

    def __init__(
        self,
        name: str = "fashion_mnist",
        root: str | None = None,
        download: bool = False,
        image_size: int = 32,
        in_channels: int | None = None,
        num_classes: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        val_size: int = 5000,
        split_seed: int = 0,
        augment: bool = True,
        crop_padding: int = 4,
        autoaugment: bool = False,
        cutout: bool = False,
        limit_train_samples: int | None = None,
        limit_test_samples: int | None = None,
        eval_split: str = "test",
        pipeline: str = "batched",
    ) -> None:
        super().__init__()
        self.spec = SPECS[check_choice("data.name", name, SPECS)]
        if in_channels is not None and in_channels != self.spec.in_channels:
            raise DatasetError(f"data.in_channels={in_channels}, but {name} has {self.spec.in_channels}")
        if num_classes is not None and num_classes != self.spec.num_classes and name != "imagenet":
            raise DatasetError(f"data.num_classes={num_classes}, but {name} has {self.spec.num_classes}")
        check("data.val_size", val_size)
        if download and name == "imagenet":
            raise DatasetError("data.download=true is not possible for imagenet: " + self.spec.fix)
        self.save_hyperparameters()
        self.name = name
        self.root = Path(root if root is not None else self.spec.default_root)
        self.download = download
        self.image_size = image_size
        self._num_classes = num_classes if num_classes is not None else self.spec.num_classes
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.val_size, self.split_seed = val_size, split_seed
        self.augment, self.autoaugment, self.cutout = augment, autoaugment, cutout
        self.crop_padding = crop_padding
        self.limit_train_samples, self.limit_test_samples = limit_train_samples, limit_test_samples
        self.eval_split = check("data.eval_split", eval_split)
        self.pipeline = check("data.pipeline", pipeline)
        if pipeline == "batched" and name == "imagenet":
            raise DatasetError("data.pipeline=batched holds the whole image set in memory as one tensor: "
                               "for imagenet set data.pipeline=per_sample")
        if pipeline == "batched" and autoaugment:
            raise DatasetError("data.autoaugment=true draws per image: set data.pipeline=per_sample with it")
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.calib_set: Dataset | None = None

    @property
    def in_channels(self) -> int:
        return self.spec.in_channels

    @property
    def num_classes(self) -> int:
        return self._num_classes

    # -- locating / downloading ------------------------------------------------
    def _find(self) -> Path | None:
        if self.name in ("fashion_mnist", "mnist"):
            return find_idx_dir(self.root, _TORCHVISION[self.name][1])
        if self.name in ("cifar10", "cifar100"):
            return find_cifar_dir(self.root, self.name)
        ok = (self.root / "train").is_dir() and (self.root / "val").is_dir()
        return self.root if ok else None

    def _locate(self) -> Path:
        """The data set's folder; downloads first when missing and ``download``."""
        folder = self._find()
        if folder is None and self.download:
            tv_class, _ = _TORCHVISION[self.name]
            for train in (True, False):
                tv_class(str(self.root), train=train, download=True)
            folder = self._find()
        if folder is None:
            raise DatasetError(f"{self.spec.title} not found in {self.root}: {self.spec.fix}")
        return folder

    def prepare_data(self) -> None:
        """Download when asked (Lightning calls this on one process only)."""
        self._locate()

    # -- datasets ------------------------------------------------------------------
    def _load(self, folder: Path, train: bool) -> tuple[Dataset, int | None]:
        """(base data set of (image, label), source image size or None for PIL). For
        ``pipeline="batched"`` the images come at the network's size already (``to_size``)."""
        n_cls = self._num_classes
        if self.name == "imagenet":
            return load_image_folder(folder / ("train" if train else "val"), n_cls), None
        size = self.image_size if self.pipeline == "batched" else None
        images, labels = _image_tensors(folder, self.name, train, n_cls, size, _files_stamp(folder))
        return TensorDataset(images, labels), images.shape[-1]

    def setup(self, stage: str | None = None) -> None:
        """Load the files and build the four splits (idempotent)."""
        if self.train_set is not None:
            return
        folder = self._locate()
        train_base, train_hw = self._load(folder, train=True)
        test_base, test_hw = self._load(folder, train=False)

        n = len(train_base)
        if self.limit_train_samples is not None:
            n = min(n, self.limit_train_samples)
            if self.val_size > n // VAL_SHARE_OF_LIMIT:  # e.g. the default 5000 of a 2048-image smoke run
                log.info("data.val_size=%d capped to %d, a tenth of data.limit_train_samples=%d",
                         self.val_size, n // VAL_SHARE_OF_LIMIT, n)
                self.val_size = n // VAL_SHARE_OF_LIMIT
        if self.val_size >= n:
            raise DatasetError(f"data.val_size={self.val_size} leaves no training images out of {n}")
        gen = torch.Generator().manual_seed(self.split_seed)
        perm = torch.randperm(n, generator=gen)
        val_idx, train_idx = perm[: self.val_size].sort().values, perm[self.val_size :].sort().values
        if self.eval_split == "val" and self.val_size == 0:
            raise DatasetError("data.eval_split=val needs held-out images: set data.val_size > 0")
        n_test = len(test_base)
        if self.limit_test_samples is not None:
            n_test = min(n_test, self.limit_test_samples)

        if self.pipeline == "batched":
            self._batched_sets(train_base, test_base, train_idx, val_idx, n_test)
        else:
            self._per_sample_sets(train_base, test_base, train_hw, test_hw, train_idx, val_idx, n_test)

    def _per_sample_sets(self, train_base: Dataset, test_base: Dataset, train_hw: int | None,
                         test_hw: int | None, train_idx: torch.Tensor, val_idx: torch.Tensor, n_test: int) -> None:
        """The four splits as data sets of images transformed one at a time (``build_transform``)."""
        s, opts = self.image_size, (self.augment, self.autoaugment, self.cutout, self.crop_padding)
        train_tf = build_transform(self.spec, s, train_hw, True, *opts)
        eval_tf = build_transform(self.spec, s, train_hw, False)
        self.train_set = _Transformed(train_base, train_idx, train_tf)
        self.val_set = _Transformed(train_base, val_idx, eval_tf)
        self.calib_set = _Transformed(train_base, train_idx, eval_tf)
        if self.eval_split == "val":
            self.test_set = _Transformed(train_base, val_idx[: self.limit_test_samples], eval_tf)
        else:
            test_tf = build_transform(self.spec, s, test_hw, False)
            self.test_set = _Transformed(test_base, torch.arange(n_test), test_tf)

    def _batched_sets(self, train_base: TensorDataset, test_base: TensorDataset,
                      train_idx: torch.Tensor, val_idx: torch.Tensor, n_test: int) -> None:
        """The four splits as batches cut from one uint8 tensor per file (``BatchedImages``), each
        file at the network's size already (``_load``)."""
        (train_images, train_labels), (test_images, test_labels) = train_base.tensors, test_base.tensors
        stats = self.spec.mean, self.spec.std
        self.train_set = BatchedImages(train_images, train_labels, train_idx, *stats, augment=True)
        self.val_set = BatchedImages(train_images, train_labels, val_idx, *stats, augment=False)
        self.calib_set = BatchedImages(train_images, train_labels, train_idx, *stats, augment=False)
        if self.eval_split == "val":
            self.test_set = BatchedImages(train_images, train_labels, val_idx[: self.limit_test_samples], *stats,
                                          augment=False)
        else:
            self.test_set = BatchedImages(test_images, test_labels, torch.arange(n_test), *stats, augment=False)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int) -> tuple:
        """A training batch of ``pipeline="batched"`` (uint8, on the training device now) is
        augmented and normalised here, all its images at once (``burstsnn.ann.augment``)."""
        images, labels = batch
        if images.dtype == torch.uint8:
            images = augment_batch(images, self.spec.mean, self.spec.std,
                                   crop_padding=self.crop_padding if self.augment else 0,
                                   hflip=self.augment and self.spec.hflip, with_cutout=self.cutout)
        return images, labels

    # -- loaders -----------------------------------------------------------------
    def _loader(
        self, ds: Dataset | None, batch_size: int, shuffle: bool, seed: int | None = None,
        sampler: Sampler | None = None,
    ) -> DataLoader:
        if ds is None:
            raise RuntimeError("call setup() before asking for a data loader")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            generator=gen,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=as_batch if isinstance(ds, BatchedImages) else None,
        )

    def train_dataloader(self) -> DataLoader:
        """Training split with augmentation, reshuffled every epoch (global RNG)."""
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Held-out split with the eval transform; ``[]`` when ``val_size=0``."""
        if self.val_size == 0:
            return []
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The images jobs are tested on (the official test set, or the held-out validation
        images with ``eval_split="val"``) with the eval transform.

        Under a distributed Trainer (``self.trainer.world_size`` > 1) rank r reads images
        r, r + W, r + 2W, ... (W = world size): every image exactly once, shards differing
        by at most one image. Lightning's default sampler would pad the last shard with
        repeated images, so metrics summed over ranks would not be those of the test set.
        """
        trainer = self.trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(
                self.test_set, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False, sampler=sampler)

    def calib_dataloader(self) -> DataLoader:
        """Training split with the eval transform, shuffled in the same fixed order
        (seed ``split_seed``) on every call; for SNN threshold calibration."""
        return self._loader(self.calib_set, self.batch_size, shuffle=True, seed=self.split_seed)
