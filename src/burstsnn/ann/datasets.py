"""Raw readers for the on-disk data set formats, offline first.

Every reader returns plain tensors (uint8 images, int64 labels) or a torchvision
``ImageFolder``; every problem with the files is a one-line :class:`DatasetError`
that names the file (or folder) and, for a missing data set, the fix.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import ImageFolder

from burstsnn.errors import DatasetError

IDX_LABELS_MAGIC = 0x00000801
IDX_IMAGES_MAGIC = 0x00000803


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def read_idx(path: str | Path, magic: int) -> torch.Tensor:
    """Read one IDX file (raw or ``.gz``) of unsigned bytes.

    ``magic`` is ``IDX_LABELS_MAGIC`` (returns ``[N]`` uint8) or
    ``IDX_IMAGES_MAGIC`` (returns ``[N, H, W]`` uint8).
    """
    path = Path(path)
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetError(f"{path}: bad IDX magic 0x{found:08x}, expected 0x{magic:08x}")
    dims = [int.from_bytes(raw[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(ndim)]
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: payload is {len(raw) - header} bytes, dims {dims} need {expected}"
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(data.copy())


_IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_dir(root: str | Path, torchvision_dir: str) -> Path | None:
    """The folder holding the four IDX files: ``root`` (flat layout, as the Debian
    package has it) or ``root/<torchvision_dir>/raw`` (torchvision's layout)."""
    root = Path(root)
    for folder in (root, root / torchvision_dir / "raw"):
        if all(_find_file(folder, s) for pair in _IDX_FILES.values() for s in pair):
            return folder
    return None


def load_idx_split(
    folder: str | Path, train: bool, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of an MNIST-style IDX data set.

    Returns ``images: [N, 1, H, W] uint8`` and ``labels: [N] int64``.
    """
    folder = Path(folder)
    img_stem, lbl_stem = _IDX_FILES[train]
    img_path, lbl_path = _find_file(folder, img_stem), _find_file(folder, lbl_stem)
    if img_path is None or lbl_path is None:
        raise DatasetError(f"{folder}: missing {img_stem}(.gz) or {lbl_stem}(.gz)")
    images = read_idx(img_path, IDX_IMAGES_MAGIC)
    labels = read_idx(lbl_path, IDX_LABELS_MAGIC).long()
    if len(images) != len(labels):
        raise DatasetError(
            f"{folder}: {img_path.name} has {len(images)} images but "
            f"{lbl_path.name} has {len(labels)} labels"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        raise DatasetError(f"{lbl_path}: label {int(labels.max())} >= {num_classes} classes")
    return images.unsqueeze(1), labels


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, lists, dicts and scalars, so a
    tampered CIFAR file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle API)
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    raw = _read_bytes(path)
    try:
        obj = _NumpyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # any unpickling failure means a corrupt file
        raise DatasetError(f"{path}: not a CIFAR pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


CIFAR_LAYOUT = {
    # kind: (folder, train files, test files, meta file, label key)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels"),
}


def find_cifar_dir(root: str | Path, kind: str) -> Path | None:
    """``root/cifar-10-batches-py`` or ``root/cifar-100-python`` when all its files exist."""
    folder_name, train_files, test_files, meta, _ = CIFAR_LAYOUT[kind]
    folder = Path(root) / folder_name
    names = [*train_files, *test_files, meta]
    return folder if all((folder / n).is_file() for n in names) else None


def load_cifar_split(
    folder: str | Path, kind: str, train: bool, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of CIFAR-10/100 in the python-pickle format.

    Our own reader (not ``torchvision.datasets.CIFAR10``): torchvision checks the
    md5 of every local file and so rejects anything but the official files; the
    md5 is checked by torchvision when it downloads (``download: true``), and here
    we check presence, keys, shapes and label ranges instead.
    Returns ``images: [N, 3, 32, 32] uint8`` and ``labels: [N] int64``.
    """
    folder = Path(folder)
    _, train_files, test_files, _, label_key = CIFAR_LAYOUT[kind]
    images, labels = [], []
    for name in train_files if train else test_files:
        path = folder / name
        entry = _load_pickle(path)
        if "data" not in entry or label_key not in entry:
            raise DatasetError(f"{path}: missing key 'data' or '{label_key}'")
        data = np.asarray(entry["data"])
        lbl = np.asarray(entry[label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]")
        if lbl.shape != (len(data),):
            raise DatasetError(f"{path}: {len(data)} images but {lbl.size} labels")
        if lbl.size and (lbl.min() < 0 or lbl.max() >= num_classes):
            raise DatasetError(f"{path}: labels outside 0..{num_classes - 1}")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.from_numpy(lbl))
    return torch.cat(images), torch.cat(labels)


def load_image_folder(folder: str | Path, num_classes: int) -> ImageFolder:
    """A torchvision ``ImageFolder`` (one sub-folder per class) with ``num_classes`` classes.

    Items are ``(PIL image, int label)``; transforms are set by the caller.
    """
    folder = Path(folder)
    try:
        ds = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as e:
        raise DatasetError(f"{folder}: not an image folder ({e})") from None
    if len(ds.classes) != num_classes:
        raise DatasetError(
            f"{folder}: {len(ds.classes)} class folders but num_classes={num_classes}"
        )
    return ds
