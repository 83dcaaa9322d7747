"""Data layer: tiny files in the real on-disk formats, loaded as users load them."""

from __future__ import annotations

import gzip
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import burstsnn.ann.data as data_module
from burstsnn.ann.data import SPECS, ImageDataModule
from burstsnn.errors import DatasetError
from datafiles import idx_bytes, make_cifar_dataset, make_idx_dataset, make_imagefolder

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"
FASHION = Path("/usr/share/datasets/fashion-mnist")
PIPELINES = ["batched", "per_sample"]


def module(name: str, root: Path, **overrides) -> ImageDataModule:
    """The data module from the shipped yaml, with overrides, after setup()."""
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg.merge_with({"root": str(root), "batch_size": 8, "eval_batch_size": 16, **overrides})
    dm = ImageDataModule(**cfg)
    dm.prepare_data()
    dm.setup()
    return dm


def check_batch(dm: ImageDataModule, loader, channels: int, classes: int, batch: int) -> None:
    """The loader's first batch as the network gets it (after the data module's on-device step)."""
    x, y = dm.on_after_batch_transfer(next(iter(loader)), 0)
    assert x.shape == (batch, channels, 32, 32) and x.dtype == torch.float32
    assert y.shape == (batch,) and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) < classes
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_yaml_keys_and_sizes(name: str) -> None:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg.name == name and cfg.image_size == 32
    assert (cfg.in_channels, cfg.num_classes) == (SPECS[name].in_channels, SPECS[name].num_classes)
    assert set(cfg) == set(OmegaConf.load(CONF / "fashion_mnist.yaml"))
    assert cfg.download is False
    dm = ImageDataModule(**cfg)  # the documented way; constructing reads no files
    assert (dm.in_channels, dm.num_classes) == (cfg.in_channels, cfg.num_classes)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_idx_flat_layout(tmp_path: Path, name: str, gz: bool, pipeline: str) -> None:
    make_idx_dataset(tmp_path, n_train=40, n_test=12, gz=gz)
    dm = module(name, tmp_path, val_size=10, pipeline=pipeline)
    assert (dm.in_channels, dm.num_classes) == (1, 10)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set), len(dm.calib_set)) == (30, 10, 12, 30)
    check_batch(dm, dm.train_dataloader(), 1, 10, 8)
    check_batch(dm, dm.val_dataloader(), 1, 10, 10)
    check_batch(dm, dm.test_dataloader(), 1, 10, 12)
    check_batch(dm, dm.calib_dataloader(), 1, 10, 8)


def test_idx_padding_keeps_pixels_exact(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path, n_train=6, n_test=3, gz=False)
    dm = module("mnist", tmp_path, val_size=0)
    raw = np.frombuffer((tmp_path / "t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8).reshape(3, 28, 28)
    x, _ = dm.test_set[1]
    mean, std = SPECS["mnist"].mean[0], SPECS["mnist"].std[0]
    pixels = (x[0] * std + mean) * 255
    assert torch.allclose(pixels[2:30, 2:30], torch.tensor(raw[1]).float(), atol=1e-3)
    assert torch.allclose(pixels[:2], torch.zeros(2, 32), atol=1e-3)


def test_idx_torchvision_layout(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path / "FashionMNIST" / "raw", n_train=20, n_test=5)
    dm = module("fashion_mnist", tmp_path, val_size=5)
    assert len(dm.train_set) == 15 and len(dm.test_set) == 5


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path, n_train=50, n_test=5)
    a, b = module("mnist", tmp_path, val_size=10), module("mnist", tmp_path, val_size=10)
    assert a.val_set.indices == b.val_set.indices
    assert not set(a.val_set.indices) & set(a.train_set.indices)
    assert len(set(a.val_set.indices) | set(a.train_set.indices)) == 50
    c = module("mnist", tmp_path, val_size=10, split_seed=1)
    assert c.val_set.indices != a.val_set.indices


def test_limits_and_no_validation(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path, n_train=50, n_test=20)
    dm = module("fashion_mnist", tmp_path, val_size=0, limit_train_samples=16, limit_test_samples=7)
    assert dm.train_set.indices == list(range(16)) and len(dm.test_set) == 7
    assert dm.val_dataloader() == []
    # A smoke run's limit caps the held-out share at a tenth (the default val_size is 5000).
    capped = module("fashion_mnist", tmp_path, val_size=5000, limit_train_samples=40)
    assert capped.val_size == 4 and len(capped.val_set) == 4 and len(capped.train_set) == 36
    with pytest.raises(ValueError, match="val_size"):
        module("fashion_mnist", tmp_path, val_size=50)  # no limit: all 50 images would be held out


def test_eval_split_val_tests_on_the_held_out_images_only(tmp_path: Path) -> None:
    """A search scores on held-out training images (data.eval_split=val), never on the test set."""
    make_idx_dataset(tmp_path, n_train=50, n_test=20)
    dm = module("mnist", tmp_path, val_size=10, eval_split="val", limit_test_samples=6)
    tested = torch.cat([x for x, _ in dm.test_dataloader()])
    held_out = torch.cat([x for x, _ in dm.val_dataloader()])
    assert torch.equal(tested, held_out[:6])
    official = torch.cat([x for x, _ in module("mnist", tmp_path, val_size=10).test_dataloader()])
    assert not any(torch.equal(image, other) for image in tested for other in official)
    assert not set(dm.test_set.indices) & set(dm.train_set.indices)
    with pytest.raises(ValueError, match="data.eval_split=val needs held-out images"):
        module("mnist", tmp_path, val_size=0, eval_split="val")


@pytest.mark.parametrize("world_size", [2, 3])
def test_test_set_shards_hold_every_image_once(tmp_path: Path, world_size: int) -> None:
    """Under DDP each rank reads its shard of the test set: no image left out or repeated
    (Lightning's default sampler pads the last shard with repeats)."""
    make_idx_dataset(tmp_path, n_train=50, n_test=20)
    dm = module("fashion_mnist", tmp_path, val_size=0, limit_test_samples=7)
    shards = []
    for rank in range(world_size):
        dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank)
        shards.append([int(i) for i in dm.test_dataloader().sampler])
    assert sorted(sum(shards, [])) == list(range(7))
    assert max(map(len, shards)) - min(map(len, shards)) == 1
    dm.trainer = None
    assert list(dm.test_dataloader().sampler) == list(range(7))  # one process: the whole set


def augmented_views(dm: ImageDataModule, index: int, n: int) -> list[torch.Tensor]:
    """``n`` training views of image ``index`` as the network gets them."""
    if dm.pipeline == "per_sample":
        return [dm.train_set[index][0] for _ in range(n)]
    images, _ = dm.on_after_batch_transfer(dm.train_set.__getitems__([index] * n), 0)
    return list(images)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_eval_deterministic_train_augmented(tmp_path: Path, pipeline: str) -> None:
    make_idx_dataset(tmp_path, n_train=30, n_test=5)
    dm = module("fashion_mnist", tmp_path, val_size=5, pipeline=pipeline)
    assert torch.equal(dm.test_set[0][0], dm.test_set[0][0])
    assert torch.equal(dm.val_set[0][0], dm.val_set[0][0])
    torch.manual_seed(0)
    views = torch.stack(augmented_views(dm, 0, 8))
    assert not all(torch.equal(views[0], v) for v in views[1:])
    x1, y1 = next(iter(dm.calib_dataloader()))
    x2, y2 = next(iter(dm.calib_dataloader()))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def shifts(image: torch.Tensor, pad: int, background: float) -> list[torch.Tensor]:
    """``image`` [C, H, W] moved by every (dy, dx) with |dy|, |dx| ≤ pad, ``background`` shifted in."""
    out = []
    _, h, w = image.shape
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            moved = torch.full_like(image, background)
            moved[:, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
                image[:, max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
            out.append(moved)
    return out


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("pad", [0, 2])
def test_crop_padding_bounds_the_random_shifts(tmp_path: Path, pad: int, pipeline: str) -> None:
    make_idx_dataset(tmp_path, n_train=30, n_test=5)
    dm = module("mnist", tmp_path, val_size=5, crop_padding=pad, pipeline=pipeline)  # MNIST: no flips
    index = 0
    plain = dm.calib_set[index][0]  # the same image without augmentation
    background = (0 - SPECS["mnist"].mean[0]) / SPECS["mnist"].std[0]
    allowed = shifts(plain, pad, background)
    torch.manual_seed(0)
    views = augmented_views(dm, index, 30)
    assert all(any(torch.allclose(v, a) for a in allowed) for v in views)
    if pad:
        assert any(not torch.allclose(v, plain) for v in views)
    else:
        assert all(torch.allclose(v, plain) for v in views)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("kind,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar(tmp_path: Path, kind: str, classes: int, pipeline: str) -> None:
    make_cifar_dataset(tmp_path, kind, n_train=23, n_test=9)
    dm = module(kind, tmp_path, val_size=3, autoaugment=pipeline == "per_sample", cutout=True, pipeline=pipeline)
    assert (dm.in_channels, dm.num_classes) == (3, classes)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (20, 3, 9)
    check_batch(dm, dm.train_dataloader(), 3, classes, 8)
    check_batch(dm, dm.test_dataloader(), 3, classes, 9)
    x = augmented_views(dm, 0, 1)[0]
    assert (x == 0).sum() >= 3 * 16 * 16  # the cutout square (zero after normalisation)


def test_cifar_pixels_in_channel_order(tmp_path: Path) -> None:
    import pickle

    make_cifar_dataset(tmp_path, "cifar10", n_train=5, n_test=2)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f)["data"][0].reshape(3, 32, 32)
    dm = module("cifar10", tmp_path, val_size=1)
    x, _ = dm.test_set[0]
    spec = SPECS["cifar10"]
    pixels = (x * torch.tensor(spec.std)[:, None, None] + torch.tensor(spec.mean)[:, None, None]) * 255
    assert torch.allclose(pixels, torch.from_numpy(raw).float(), atol=1e-3)


def test_imagenet_folder(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, classes=3, n_per_class=4, size=(40, 48))
    dm = module("imagenet", tmp_path, num_classes=3, val_size=2)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (10, 2, 12)
    check_batch(dm, dm.train_dataloader(), 3, 3, 8)
    check_batch(dm, dm.test_dataloader(), 3, 3, 12)
    with pytest.raises(DatasetError, match="3 class folders but num_classes=1000"):
        module("imagenet", tmp_path, val_size=2)


@pytest.mark.parametrize(
    "name,fix",
    [
        ("fashion_mnist", "apt-get install dataset-fashion-mnist"),
        ("mnist", "data.download=true"),
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("imagenet", "train/ and val/"),
    ],
)
def test_missing_dataset_names_the_fix(tmp_path: Path, name: str, fix: str) -> None:
    with pytest.raises(DatasetError) as err:
        module(name, tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg and "not found in" in msg and fix in msg and "data.root=" in msg


def test_download_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeFashionMNIST:  # stands in for torchvision's: writes its raw/ layout
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            make_idx_dataset(Path(root) / "FashionMNIST" / "raw", n_train=12, n_test=4)

    monkeypatch.setitem(data_module._TORCHVISION, "fashion_mnist", (FakeFashionMNIST, "FashionMNIST"))
    with pytest.raises(DatasetError):
        module("fashion_mnist", tmp_path, val_size=2)
    assert calls == []
    dm = module("fashion_mnist", tmp_path, val_size=2, download=True)
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert len(dm.train_set) == 10 and len(dm.test_set) == 4


def test_bad_config_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.name='svhn' is not allowed: one of fashion_mnist"):
        ImageDataModule(name="svhn")
    with pytest.raises(ValueError, match="num_classes=100"):
        ImageDataModule(name="cifar10", num_classes=100)
    with pytest.raises(ValueError, match="cannot be downloaded"):
        ImageDataModule(name="imagenet", download=True, pipeline="per_sample")
    with pytest.raises(DatasetError, match="for imagenet set data.pipeline=per_sample"):
        ImageDataModule(name="imagenet")
    with pytest.raises(DatasetError, match="data.autoaugment=true draws per image: set data.pipeline=per_sample"):
        ImageDataModule(name="cifar10", autoaugment=True)
    with pytest.raises(ValueError, match="data.pipeline='gpu' is not allowed"):
        ImageDataModule(pipeline="gpu")


def _corrupt(root: Path, name: str, data: bytes) -> None:
    (root / name).write_bytes(data)


@pytest.mark.parametrize(
    "file,make_bytes,match",
    [
        ("train-images-idx3-ubyte.gz", lambda good: good[: len(good) // 2], "cannot read"),
        ("train-images-idx3-ubyte.gz",
         lambda good: gzip.compress(b"\x00\x00\x08\x02" + gzip.decompress(good)[4:]), "bad IDX magic"),
        ("train-labels-idx1-ubyte.gz",
         lambda good: gzip.compress(idx_bytes(np.zeros(7, np.uint8))), "has 20 images but .* has 7 labels"),
        ("train-labels-idx1-ubyte.gz",
         lambda good: gzip.compress(gzip.decompress(good)[:-3]), "payload is 17 bytes, dims \\[20\\] need 20"),
        ("t10k-labels-idx1-ubyte.gz",
         lambda good: gzip.compress(idx_bytes(np.full(5, 10, np.uint8))), "label 10 >= 10 classes"),
    ],
)
def test_corrupt_idx(tmp_path: Path, file: str, make_bytes, match: str) -> None:
    make_idx_dataset(tmp_path, n_train=20, n_test=5)
    _corrupt(tmp_path, file, make_bytes((tmp_path / file).read_bytes()))
    with pytest.raises(DatasetError, match=match) as err:
        module("fashion_mnist", tmp_path, val_size=2)
    assert file in str(err.value) and "\n" not in str(err.value)


def test_corrupt_cifar(tmp_path: Path) -> None:
    import pickle

    make_cifar_dataset(tmp_path, "cifar10", n_train=10, n_test=4)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DatasetError, match="data_batch_2: not a CIFAR pickle"):
        module("cifar10", tmp_path, val_size=1)
    with open(batch, "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, f)
    with pytest.raises(DatasetError, match="2 images but 1 labels"):
        module("cifar10", tmp_path, val_size=1)
    with open(batch, "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "evil": print}, f)
    with pytest.raises(DatasetError, match="forbidden global builtins.print"):
        module("cifar10", tmp_path, val_size=1)


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist() -> None:
    dm = module("fashion_mnist", FASHION, val_size=5000)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (55000, 5000, 10000)
    labels = torch.cat([y for _, y in dm.test_dataloader()])
    assert torch.equal(torch.bincount(labels), torch.full((10,), 1000))
    check_batch(dm, dm.train_dataloader(), 1, 10, 8)
    check_batch(dm, dm.test_dataloader(), 1, 10, 16)


@pytest.mark.parametrize("pipeline", ["batched", "per_sample"])
def test_image_tensors_are_kept_for_the_next_job_until_a_file_changes(tmp_path: Path, pipeline: str) -> None:
    """The jobs of a sweep share one process: a second data module on the same files reuses the
    loaded (and, batched, resized) tensors; a rewritten file is read again, a corrupt one is an error."""
    root = tmp_path / "fm"
    make_idx_dataset(root, n_train=40, n_test=20, seed=0)
    first = module("fashion_mnist", root, val_size=4, pipeline=pipeline)
    again = module("fashion_mnist", root, val_size=4, pipeline=pipeline)
    images = first.test_set.base.tensors[0] if pipeline == "per_sample" else first.test_set.images
    assert images is (again.test_set.base.tensors[0] if pipeline == "per_sample" else again.test_set.images)
    assert images.shape[-1] == (32 if pipeline == "batched" else 28)
    before = next(iter(first.test_dataloader()))[0]
    make_idx_dataset(root, n_train=40, n_test=24, seed=1)  # the same names, other contents
    changed = module("fashion_mnist", root, val_size=4, pipeline=pipeline)
    assert len(changed.test_set) == 24 and not torch.equal(next(iter(changed.test_dataloader()))[0], before)
    labels = next(root.glob("t10k-labels*"))
    labels.write_bytes(b"not an IDX file at all")
    with pytest.raises(DatasetError, match="t10k-labels"):
        module("fashion_mnist", root, val_size=4, pipeline=pipeline)
