"""One job: config → ANN (trained once, cached) → evaluation → results.json."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from torch import nn

from burstsnn.ann import ANNClassifier
from burstsnn.atomic import write_json_atomic
from burstsnn.cache import AnnCache, ann_key
from burstsnn.config import ConfigError, validate
from burstsnn.data import ImageDataModule
from burstsnn.datasets import DatasetError
from burstsnn.models import build_model

log = logging.getLogger("burstsnn")


@dataclass(frozen=True)
class JobContext:
    """Where a job writes (`job_dir`) and how it is named in loggers (`name`, sweep `group`)."""

    job_dir: Path
    name: str = "default"
    group: str | None = None


def user_error() -> tuple[type[Exception], ...]:
    """Errors caused by the user's input: reported as one line, without a traceback."""
    return (ConfigError, DatasetError)


def make_trainer(cfg: DictConfig, logger: Logger | bool, **overrides: Any) -> pl.Trainer:
    """A Lightning Trainer from the `trainer` config (hardware) plus job-specific arguments."""
    hardware = cfg.trainer
    return pl.Trainer(
        accelerator=hardware.accelerator,
        devices=hardware.devices,
        strategy=hardware.strategy,
        deterministic=hardware.deterministic,
        enable_progress_bar=hardware.enable_progress_bar,
        enable_checkpointing=False,
        enable_model_summary=False,
        logger=logger,
        **overrides,
    )


def build_ann(cfg: DictConfig) -> nn.Module:
    model = cfg.model
    return build_model(model.name, model.num_classes, model.in_channels, model.width,
                       model.image_size)


def train_ann(
    cfg: DictConfig, model: nn.Module, data: ImageDataModule, logger: Logger | bool
) -> dict[str, Any]:
    """Train `model` in place with the paper's recipe; returns the cache meta (config, accuracy)."""
    recipe = cfg.train
    module = ANNClassifier(
        model, cfg.model.num_classes, lr=recipe.lr, momentum=recipe.momentum,
        weight_decay=recipe.weight_decay, label_smoothing=recipe.label_smoothing,
    )
    trainer = make_trainer(
        cfg, logger, max_epochs=recipe.epochs,
        limit_train_batches=recipe.limit_train_batches,
        limit_val_batches=recipe.limit_val_batches,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - started
    val_acc = trainer.callback_metrics.get("ann/val_acc")
    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "train_seconds": seconds,
        "val_acc": None if val_acc is None else float(val_acc),
    }


def test_ann(cfg: DictConfig, model: nn.Module, data: ImageDataModule, logger: Logger | bool) -> float:
    """Test-set accuracy of the ANN (fraction in [0, 1])."""
    module = ANNClassifier(model, cfg.model.num_classes)
    result = make_trainer(cfg, logger).test(module, datamodule=data, verbose=False)
    return float(result[0]["ann/test_acc"])


def run_job(cfg: DictConfig, context: JobContext) -> dict[str, Any]:
    """Run one job and return its results (also written to `context.job_dir`)."""
    validate(cfg)
    if cfg.trainer.num_threads is not None:
        torch.set_num_threads(cfg.trainer.num_threads)
    pl.seed_everything(cfg.seed, workers=True)
    data = ImageDataModule(**cfg.data)
    data.setup()
    cache = AnnCache(Path(cfg.cache_dir))
    key = ann_key(cfg)
    model = build_ann(cfg)
    started = time.perf_counter()
    meta, trained = cache.load_or_train(key, model, lambda m: train_ann(cfg, m, data, False))
    ann_seconds = time.perf_counter() - started
    where = cache.entry(key)
    log.info("%s the ANN (%.1f s): %s", "Trained" if trained else "Reused cached", ann_seconds, where)
    ann_acc = test_ann(cfg, model, data, False)
    log.info("ANN test accuracy: %.2f %%", 100 * ann_acc)
    results = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "ann": {"key": key, "trained": trained, "checkpoint": str(where), "test_acc": ann_acc,
                "val_acc": meta.get("val_acc"), "train_seconds": meta.get("train_seconds")},
        "timings": {"ann_s": ann_seconds},
    }
    write_json_atomic(context.job_dir / "results.json", results)
    return results
