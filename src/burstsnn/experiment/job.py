"""One job: config → ANN (trained once, cached) → conversion → SNN evaluation → results."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import Logger
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from burstsnn.ann.classifier import ANNClassifier
from burstsnn.ann.data import ImageDataModule
from burstsnn.ann.checkpoint import load_checkpoint
from burstsnn.ann.models import build_ann
from burstsnn.atomic import write_json_atomic
from burstsnn.errors import ConfigError
from burstsnn.experiment.cache import AnnCache, ann_key
from burstsnn.experiment.callbacks import ConversionCallback, ConversionSettings
from burstsnn.experiment.config import resolved_config, validate
from burstsnn.experiment.context import JobContext
from burstsnn.experiment.summary import print_summary
from burstsnn.experiment.tracking import build_logger, close_logger, log_results
from burstsnn.heap import keep_freed_memory
from burstsnn.measure.frontier import t_within
from burstsnn.rules import theta_scale_value

log = logging.getLogger("burstsnn")


def make_trainer(
    cfg: DictConfig, logger: Logger | None, callbacks: Sequence[pl.Callback] = (), **overrides: Any
) -> pl.Trainer:
    """A Lightning Trainer from the `trainer` config (hardware) plus job-specific arguments.

    Progress bars are tqdm's: the SNN test runs in a Trainer inside the training Trainer's
    `fit`, and Lightning's default Rich bars cannot nest (the outer one fails at teardown).
    """
    hardware = cfg.trainer
    progress_bar = [TQDMProgressBar()] if hardware.enable_progress_bar else []
    return pl.Trainer(
        accelerator=hardware.accelerator,
        devices=hardware.devices,
        strategy=hardware.strategy,
        deterministic=hardware.deterministic,
        enable_progress_bar=hardware.enable_progress_bar,
        enable_checkpointing=False,
        enable_model_summary=False,
        logger=logger if logger is not None else False,
        callbacks=[*progress_bar, *callbacks],
        **overrides,
    )


def ann_module(cfg: DictConfig, model: nn.Module) -> ANNClassifier:
    """`model` as the LightningModule that trains and tests it with the paper's recipe."""
    recipe = cfg.train
    return ANNClassifier(
        model, cfg.model.num_classes, lr=recipe.lr, momentum=recipe.momentum,
        weight_decay=recipe.weight_decay, label_smoothing=recipe.label_smoothing,
    )


def train_ann(
    cfg: DictConfig, module: ANNClassifier, data: ImageDataModule, logger: Logger | None,
    conversion: ConversionCallback,
) -> dict[str, Any]:
    """Train `module.model` in place; `conversion` converts it at the end of `fit`. Returns
    the cache meta (config, accuracy, training time without the conversion)."""
    recipe = cfg.train
    trainer = make_trainer(
        cfg, logger, max_epochs=recipe.epochs,
        limit_train_batches=recipe.limit_train_batches,
        limit_val_batches=recipe.limit_val_batches,
        callbacks=[conversion],
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=data)
    val_acc = trainer.callback_metrics.get("ann/val_acc")
    return {
        "config": resolved_config(cfg),
        "train_seconds": time.perf_counter() - started - conversion.seconds,
        "val_acc": None if val_acc is None else float(val_acc),
    }


def relaunches_script(cfg: DictConfig) -> bool:
    """Whether Lightning would start the job's other DDP ranks by re-running the command line
    (rather than a cluster such as Slurm, or torchrun, starting every rank)."""
    hardware = cfg.trainer
    started_outside = "LOCAL_RANK" in os.environ or SLURMEnvironment.detect()
    return "ddp" in str(hardware.strategy) and hardware.devices != 1 and not started_outside


def conversion_settings(cfg: DictConfig) -> ConversionSettings:
    """The job's conversion knobs, with theta_scale as a number."""
    return ConversionSettings(
        p=float(cfg.p), gamma=cfg.gamma, pooling=cfg.pooling, reset=cfg.reset,
        v_init=float(cfg.v_init), theta_scale=theta_scale_value(cfg.theta_scale, cfg.gamma),
        channel_wise=cfg.channel_wise, calib_batches=cfg.calib_batches,
        lambda_rule=cfg.lambda_rule, bias_correction=cfg.bias_correction,
        T=cfg.T, chunk=cfg.chunk,
    )


def ann_identity(cfg: DictConfig, checkpoint_sha256: str | None) -> str | None:
    """The loaded ANN's weights (its checkpoint's sha256) and architecture (the model config),
    under which a process keeps its test predictions for the next job; None if unknown."""
    if checkpoint_sha256 is None:
        return None
    return f"{checkpoint_sha256}|{json.dumps(OmegaConf.to_container(cfg.model, resolve=True), sort_keys=True)}"


def finished_results(cfg: DictConfig, path: Path) -> dict[str, Any] | None:
    """The results at `path` if they were computed for this same config (skip_done aside)."""
    if not path.exists():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ignore = ("skip_done",)
    stored = {k: v for k, v in results.get("config", {}).items() if k not in ignore}
    wanted = {k: v for k, v in resolved_config(cfg).items() if k not in ignore}
    return results if stored == wanted else None


def run_job(cfg: DictConfig, context: JobContext) -> dict[str, Any]:
    """Run one job; returns its results, also written to `context.job_dir/results.json`.

    With `skip_done`, a job whose results.json already holds results for the same resolved
    config returns those without running again. A trained ANN is converted by the
    ConversionCallback inside `fit`; a cached one by the same callback's `run`.

    Under DDP every rank runs this function (Lightning re-launches run.py for ranks ≥ 1 at
    rank 0's first Trainer call); only rank 0 trains into the cache, logs, prints and writes
    results.json.
    """
    validate(cfg)
    if context.group is not None and relaunches_script(cfg):
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.strategy} with trainer.devices={cfg.trainer.devices} "
            "cannot run inside a local sweep (-m): Lightning would re-run the sweep's command "
            "for each rank; run single jobs, or sweep on Slurm (hydra/launcher=slurm with "
            "hydra.launcher.tasks_per_node equal to the devices per node)"
        )
    results_path = context.job_dir / "results.json"
    if cfg.skip_done and (done := finished_results(cfg, results_path)) is not None:
        log.info("skip_done: %s already holds this job's results; skipping it", results_path)
        return done
    keep_freed_memory()  # each step's freed tensors reused, not faulted in again (burstsnn.heap)
    started = time.perf_counter()
    if cfg.trainer.num_threads is not None:
        torch.set_num_threads(cfg.trainer.num_threads)
    pl.seed_everything(cfg.seed, workers=True)
    rank_zero = rank_zero_only.rank == 0
    data = ImageDataModule(**cfg.data)
    data.setup()
    logger = build_logger(cfg.logger, resolved_config(cfg), context) if rank_zero else None
    try:
        module = ann_module(cfg, build_ann(OmegaConf.to_container(cfg.model, resolve=True)))
        conversion = ConversionCallback(conversion_settings(cfg), lambda: make_trainer(cfg, logger))
        if cfg.checkpoint is not None:  # weights trained elsewhere: no training, the cache untouched
            sha256 = load_checkpoint(module.model, Path(cfg.checkpoint))
            ann = {"key": None, "trained": False, "checkpoint": cfg.checkpoint, "checkpoint_sha256": sha256}
            origin = "Loaded"
        else:
            cache, key = AnnCache(Path(cfg.cache_dir)), ann_key(cfg)
            meta, trained = cache.load_or_train(
                key, module.model, lambda _: train_ann(cfg, module, data, logger, conversion),
                rank_zero=rank_zero,
            )
            # (a DDP rank ≥ 1 that trained beside rank 0 stores nothing: no checksum there)
            ann = {"key": key, "trained": trained, "checkpoint": str(cache.checkpoint(key)),
                   "checkpoint_sha256": meta.get("sha256"), "val_acc": meta.get("val_acc"),
                   "train_seconds": meta.get("train_seconds")}
            origin = "Trained" if trained else "Reused cached"
        ann_s = time.perf_counter() - started - conversion.seconds  # without fit's conversion
        log.info("%s the ANN (%.1f s): %s", origin, ann_s, ann["checkpoint"])
        if not ann["trained"]:
            conversion.run(module.model, data, ann_identity(cfg, ann["checkpoint_sha256"]))
        snn = dict(conversion.results)
        timings = snn.pop("timings")
        ann_acc = snn.pop("ann_acc")  # measured in the SNN's test pass, on the same images
        results = {
            "config": resolved_config(cfg),
            "overrides": list(context.overrides),
            "method": context.method,
            "ann": {**ann, "test_acc": ann_acc},
            "snn": {**snn, "conversion_loss": ann_acc - snn["acc_at_T"],
                    "t_within_1pt": t_within(snn["acc_over_t"], ann_acc, points=1.0)},
            "timings": {"ann_s": ann_s, **timings},
        }
        logging_started = time.perf_counter()
        log_results(logger, results)
        results["timings"]["logging_s"] = time.perf_counter() - logging_started
    finally:
        close_logger(logger)
    results["timings"]["total_s"] = time.perf_counter() - started
    if rank_zero:
        write_json_atomic(results_path, results)
        print_summary(results)
    return results
