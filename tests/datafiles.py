"""Tiny data sets in the real on-disk formats, for tests (plain functions).

Each writes into ``root`` and returns the directory to pass as ``data.root``.
Images and labels are drawn from ``numpy.random.default_rng(seed)``; labels
cycle through every class so each one appears.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array of 1 (labels) or 3 (images) dims."""
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes).astype(np.uint8)


def make_idx_dataset(
    root: str | Path,
    n_train: int,
    n_test: int,
    image_hw: tuple[int, int] = (28, 28),
    classes: int = 10,
    seed: int = 0,
    gz: bool = True,
) -> Path:
    """The four MNIST-style IDX files (``.gz`` when ``gz``) in ``root`` (flat layout)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays = {
            "images-idx3-ubyte": rng.integers(0, 256, (n, *image_hw), dtype=np.uint8),
            "labels-idx1-ubyte": _labels(rng, n, classes),
        }
        for suffix, array in arrays.items():
            data = idx_bytes(array)
            path = root / f"{prefix}-{suffix}"
            if gz:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
            else:
                path.write_bytes(data)
    return root


def make_cifar_dataset(
    root: str | Path, kind: str = "cifar10", n_train: int = 50, n_test: int = 20, seed: int = 0
) -> Path:
    """CIFAR-10 (5 train batches + test_batch + batches.meta under
    ``cifar-10-batches-py``) or CIFAR-100 (train, test, meta under
    ``cifar-100-python``) python pickles with the real key names."""
    root = Path(root)
    rng = np.random.default_rng(seed)

    def dump(path: Path, obj: dict) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    def entry(n: int, classes: int, label_key: str) -> dict:
        return {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: [int(x) for x in _labels(rng, n, classes)],
            "filenames": [f"img_{i}.png" for i in range(n)],
        }

    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        sizes = [n_train // 5 + (i < n_train % 5) for i in range(5)]
        for i, n in enumerate(sizes, start=1):
            dump(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", **entry(n, 10, "labels")})
        dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", **entry(n_test, 10, "labels")})
        dump(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    elif kind == "cifar100":
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for name, n in (("train", n_train), ("test", n_test)):
            e = entry(n, 100, "fine_labels")
            e["coarse_labels"] = [c // 5 for c in e["fine_labels"]]
            dump(folder / name, e)
        dump(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                               "coarse_label_names": [f"c{i}" for i in range(20)]})
    else:
        raise ValueError(f"kind={kind!r}: expected 'cifar10' or 'cifar100'")
    return root


def make_imagefolder(
    root: str | Path, classes: int = 3, n_per_class: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0
) -> Path:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` RGB images of ``size`` (w, h)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root
