"""Shared fixtures and helpers: tiny on-disk data, composed job configs, no network, no W&B
server; small CNNs with realistic BatchNorm statistics and their SNNs' convergence."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn

import burstsnn.experiment.config  # noqa: F401  (registers the schema that conf/config.yaml names)
from burstsnn.snn import kernels
from datafiles import make_idx_dataset

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST-format IDX files: 192 training and 64 test images (28×28, 10 classes)."""
    return make_idx_dataset(tmp_path_factory.mktemp("tiny_fmnist"), n_train=192, n_test=64)


@pytest.fixture(scope="module")
def eager_steps():
    """Eager neuron and pool steps for a module (same results, see test_engine.py):
    compiling them for each new shape or window costs more than short runs save."""
    enabled = kernels.Fused.enabled
    kernels.Fused.enabled = False
    yield
    kernels.Fused.enabled = enabled


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: with the 2 cores shared by other jobs, two threads
    stall on each other (tests/test_torchvision_models.py: 291 s with 2 threads, 13 s with 1,
    measured back to back at load average 5)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# --- small CNNs and convergence (imported by test files: `from conftest import ...`) --------


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
        )
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(self.drop(torch.flatten(self.features(x), 1)))


class ResidualCNN(nn.Module):
    """Stem, one residual block with a reused ReLU module and an F.relu after the add."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        x = self.stem(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)) + x)
        return self.head(self.pool(F.relu(out)))


def ready(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Give BN non-trivial statistics and affine parameters, then eval mode."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.3)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x * 1.3 + 0.2)
    return model.eval()


def convergence(snn, ann, x, Ts, chunk=None):
    """(errors, agreements) at each T in Ts: max |Σ_{t≤T} SNN output(t) / T − ANN logits|
    relative to max |logits|, and the share of samples whose top-1 class is the ANN's."""
    with torch.no_grad():
        ref = ann(x)
    out = snn(x, max(Ts), chunk)
    mean = out.cumsum(0) / torch.arange(1, max(Ts) + 1).view(-1, 1, 1)
    errors = [((mean[T - 1] - ref).abs().max() / ref.abs().max()).item() for T in Ts]
    agreements = [(mean[T - 1].argmax(1) == ref.argmax(1)).double().mean().item() for T in Ts]
    return errors, agreements


def rate_error(snn, ann, x, Ts):
    """The errors of ``convergence`` at each T in Ts."""
    return convergence(snn, ann, x, Ts)[0]
