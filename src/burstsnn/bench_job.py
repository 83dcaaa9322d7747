"""The rest of a job, timed against its floor: ``python -m burstsnn.bench --job``.

- **Training step**: an ANN training step through Lightning, as ``python run.py`` trains
  (the data module's loader, the on-device augmentation, the optimiser and scheduler), against
  the bare step: forward, loss, backward and SGD step of the same network on one batch already
  in memory. One row per ``data.pipeline``; the ratio is the median step over the median bare
  step. The faster pipeline is the one to use on this machine.
- **Calibration**: the lowlatency preset's conversion (``method=lowlatency``: per-channel
  least-squared-error λ and bias correction on its calibration batches), first on a new ANN
  (recording the calibration pass) and again on the same ANN (a frontier trial: the recording
  is reused), against the simulation it serves: T steps of the first ``images`` test images.

Both use the job's own configuration (``conf/``, with the given overrides) and the data set it
names; the ANN has random weights (conversion and training costs do not depend on them). The
kernels are compiled before anything is timed.
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from burstsnn.ann.classifier import ANNClassifier
from burstsnn.ann.data import ImageDataModule
from burstsnn.ann.models import build_ann
from burstsnn.conversion import convert, recording
from burstsnn.experiment.job import ann_module, conversion_settings, make_trainer

CONF = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class JobRow:
    """One timed part of a job: ``seconds`` (median) against ``floor_seconds`` (median)."""

    part: str
    what: str
    seconds: float
    floor: str
    floor_seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds


def job_config(overrides: Sequence[str]) -> DictConfig:
    """The job's config from ``conf/`` with ``overrides`` (as on the command line)."""
    if not CONF.is_dir():
        raise SystemExit(f"--job reads the job config from {CONF}: run it from a checkout of the repository")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


class _StepTimes(pl.Callback):
    """Wall time between the ends of consecutive training steps (data, transfer, step)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args: object) -> None:
        self.ends.append(time.perf_counter())


def training_rows(overrides: Sequence[str], steps: int, warmup: int = 5) -> list[JobRow]:
    """Median training step through Lightning, per ``data.pipeline``, against the bare step."""
    rows, bare = [], None
    for pipeline in ("batched", "per_sample"):
        cfg = job_config([*overrides, f"data.pipeline={pipeline}", "logger=none", "trainer.enable_progress_bar=false"])
        pl.seed_everything(cfg.seed, workers=True)
        data = ImageDataModule(**cfg.data)
        data.setup()
        module = ann_module(cfg, build_ann(OmegaConf.to_container(cfg.model, resolve=True)))
        if bare is None:  # on a copy: the Lightning run starts from the same weights
            bare = _bare_step_seconds(copy.deepcopy(module), data, steps, warmup)
        timer = _StepTimes()
        trainer = make_trainer(cfg, None, [timer], max_steps=warmup + steps, limit_val_batches=0,
                               num_sanity_val_steps=0)
        trainer.fit(module, datamodule=data)
        gaps = [b - a for a, b in zip(timer.ends[warmup:], timer.ends[warmup + 1:])]
        rows.append(JobRow("training step", f"data.pipeline={pipeline}", statistics.median(gaps),
                           "bare step (batch in memory)", bare))
    return rows


def _bare_step_seconds(module: ANNClassifier, data: ImageDataModule, steps: int, warmup: int) -> float:
    """Median time of forward + loss + backward + SGD step on one resident, augmented batch."""
    x, y = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    x = x.contiguous(memory_format=torch.channels_last)
    optimizer = module.optimizer()
    module.train()
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        loss = module.loss(module(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


def calibration_rows(overrides: Sequence[str], images: int, repeats: int) -> list[JobRow]:
    """The lowlatency conversion (new ANN; again on the same ANN) against T steps of ``images``."""
    with warnings.catch_warnings():  # random weights leave some channels silent: λ = 1 there, warned
        warnings.filterwarnings("ignore", message=".*never activated during calibration")
        return _calibration_rows(overrides, images, repeats)


def _calibration_rows(overrides: Sequence[str], images: int, repeats: int) -> list[JobRow]:
    cfg = job_config([*overrides, "method=lowlatency", "logger=none"])
    knobs = conversion_settings(cfg).convert_kwargs
    pl.seed_everything(cfg.seed)
    data = ImageDataModule(**cfg.data)
    data.setup()
    ann = build_ann(OmegaConf.to_container(cfg.model, resolve=True)).eval()
    with torch.no_grad():  # BN running statistics moved toward those of real images
        ann.train()
        for x, _ in itertools.islice(data.calib_dataloader(), 3):
            ann(x)
        ann.eval()
    batches = []
    for x, _ in data.test_dataloader():
        batches.append(x)
        if sum(len(b) for b in batches) >= images:
            break
    convert(ann, data.calib_dataloader(), **knobs)(batches[0][:8], cfg.T)  # compile the kernels

    def simulate(snn: torch.nn.Module) -> None:
        for x in batches:
            snn(x, cfg.T)

    first, again, simulation = [], [], []
    for _ in range(repeats):
        recording.forget()
        start = time.perf_counter()
        snn = convert(ann, data.calib_dataloader(), **knobs)
        first.append(time.perf_counter() - start)
        start = time.perf_counter()
        convert(ann, data.calib_dataloader(), **knobs)
        again.append(time.perf_counter() - start)
        start = time.perf_counter()
        simulate(snn)
        simulation.append(time.perf_counter() - start)
    n = sum(len(b) for b in batches)
    floor = f"simulation, T={cfg.T}, {n} images"
    sim = statistics.median(simulation)
    return [JobRow("calibration", "method=lowlatency, new ANN", statistics.median(first), floor, sim),
            JobRow("calibration", "the same ANN again (a search trial)", statistics.median(again), floor, sim)]


def table(rows: Sequence[JobRow], title: str) -> Table:
    t = Table(title=title)
    for name in ("part", "what", "time (s)", "against", "its time (s)", "ratio"):
        t.add_column(name, justify="left" if name in ("part", "what", "against") else "right")
    for r in rows:
        t.add_row(r.part, r.what, f"{r.seconds:.3f}", r.floor, f"{r.floor_seconds:.3f}", f"{r.ratio:.2f}")
    return t
