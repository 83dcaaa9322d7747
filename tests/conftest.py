"""Shared fixtures: tiny on-disk data, composed job configs, no network, no W&B server."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from datafiles import make_idx_dataset

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST-format IDX files: 192 training and 64 test images (28×28, 10 classes)."""
    return make_idx_dataset(tmp_path_factory.mktemp("tiny_fmnist"), n_train=192, n_test=64)


def tiny_overrides(data_root: Path, cache_dir: Path) -> list[str]:
    """Overrides that make a whole job take seconds: tiny data, tiny net, one epoch, T=4."""
    return [
        f"data.root={data_root}",
        "data.batch_size=32",
        "data.eval_batch_size=32",
        "data.val_size=32",
        "model.width=0.125",
        "train.epochs=1",
        "T=4",
        f"cache_dir={cache_dir}",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]


@pytest.fixture
def job_config(tiny_idx_root: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """compose(*overrides) -> the job config on tiny data, with a cache in tmp_path."""

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            base = tiny_overrides(tiny_idx_root, tmp_path / "cache")
            return compose(config_name="config", overrides=[*base, *overrides])

    return make
