"""A small image data set held as one uint8 tensor, fetched a batch at a time
(``data.pipeline=batched``): one gather per batch instead of one Python call per image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from burstsnn.ann.augment import normalise


class BatchedImages(Dataset):
    """The images ``indices`` of ``images`` (uint8 ``[N, C, S, S]``, at the network's size) and
    their labels ``[N]``. ``__getitems__`` (what a DataLoader calls with ``as_batch``) gives
    ``(images [B, C, S, S], labels [B])``: the images normalised with ``mean``/``std`` (float32),
    or, with ``augment``, uint8 for the training device to augment and normalise
    (``ImageDataModule.on_after_batch_transfer``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                 mean: Sequence[float], std: Sequence[float], augment: bool) -> None:
        self.images, self.labels, self.rows = images, labels, indices
        self.indices = indices.tolist()  # as the per-image data set's
        self.mean, self.std, self.augment = mean, std, augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([i])
        return images[0], labels[0]

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows[positions]
        images = self.images[rows]
        return (images if self.augment else normalise(images, self.mean, self.std)), self.labels[rows]


def as_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The DataLoader's collate function for ``BatchedImages``: its batch is already one."""
    return batch
