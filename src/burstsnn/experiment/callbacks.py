"""ConversionCallback: a trained ANN in, the converted SNN evaluated and logged out."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from torch import nn

from burstsnn.ann.checkpoint import cpu_state_dict
from burstsnn.ann.data import ImageDataModule
from burstsnn.conversion import convert
from burstsnn.measure.evaluate import SNNEvaluator


@dataclass(frozen=True)
class ConversionSettings:
    """The knobs of one conversion (paper §3) and its simulation length."""

    p: float
    gamma: int
    pooling: str
    reset: str
    v_init: float
    theta_scale: float  # θ_l = theta_scale · λ_l
    channel_wise: bool
    calib_batches: int
    T: int
    chunk: int | None = None
    lambda_rule: str = "percentile"  # or "mse" (see burstsnn.conversion.convert.convert)
    bias_correction: bool = False  # see burstsnn.conversion.convert.convert

    @property
    def convert_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``convert`` (all but the simulation's T and chunk)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("T", "chunk")}


class ConversionCallback(pl.Callback):
    """Converts the ANN after `fit` and evaluates the SNN on the test set (logging is the job's).

    As a callback of the training Trainer it runs at `on_fit_end`, on every rank, with rank
    0's trained weights (DDP ranks end a fit with slightly different BN statistics, so every
    rank converts the same copy). `run(ann, data)` does the work and is also what a job calls
    when its ANN came from the cache (no fit happened). The SNN is evaluated by a fresh
    Trainer from `make_trainer` (same hardware and loggers as the job), whose test_step
    simulates T steps on the data module's test loader (every test image once, also under
    DDP). `results` then holds the SNN metrics, conversion settings and wall times.
    """

    def __init__(
        self, settings: ConversionSettings, make_trainer: Callable[[], pl.Trainer]
    ) -> None:
        self.settings = settings
        self.make_trainer = make_trainer
        self.results: dict[str, Any] = {}

    @property
    def seconds(self) -> float:
        """Wall time of the last conversion (calibration + simulation); 0 before any."""
        return sum(self.results.get("timings", {}).values())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        ann = pl_module.model
        ann.load_state_dict(trainer.strategy.broadcast(cpu_state_dict(ann), src=0))
        self.run(ann, trainer.datamodule)

    def run(self, ann: nn.Module, data: ImageDataModule, ann_key: str | None = None) -> dict[str, Any]:
        """Calibrate on training batches, convert, simulate the test set; returns the results.
        ``ann_key``: the ANN's identity, for reusing its test predictions (see SNNEvaluator)."""
        s = self.settings
        started = time.perf_counter()
        snn = convert(ann, data.calib_dataloader(), **s.convert_kwargs)  # on ann's device; ann is not modified
        calibration_s = time.perf_counter() - started
        image_shape = (data.in_channels, data.image_size, data.image_size)  # as every image comes out
        evaluator = SNNEvaluator(snn, ann, s.T, image_shape, s.chunk, ann_key)
        trainer = self.make_trainer()
        started = time.perf_counter()
        trainer.test(evaluator, datamodule=data, verbose=False)
        simulation_s = time.perf_counter() - started
        self.results = {
            **evaluator.results,
            "T": s.T,
            "theta_scale": s.theta_scale,
            "timings": {
                "calibration_s": calibration_s,
                "simulation_s": simulation_s,
            },
        }
        return self.results
