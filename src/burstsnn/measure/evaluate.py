"""The SNN's test pass as a LightningModule: each test_step simulates T steps on a batch."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from burstsnn.measure.metrics import SNNMetrics
from burstsnn.snn.network import SpikingNetwork


class SNNEvaluator(pl.LightningModule):
    """Simulates `snn` for `T` steps per test batch and accumulates SNNMetrics, with `ann`'s
    predictions on the same batch for the agreement over t.

    Lightning brings devices/DDP, progress bars and loggers; the metrics are torchmetrics,
    summed across ranks. After `trainer.test(...)`, `results` holds SNNMetrics.compute(),
    whose `ann_acc` is the job's ANN accuracy (images channels-last, as the ANN is trained
    and kept: the same logits as its own test pass).
    """

    def __init__(
        self, snn: SpikingNetwork, ann: nn.Module, T: int, input_shape: tuple[int, ...], chunk: int | None = None
    ) -> None:
        super().__init__()
        self.snn = snn
        self.ann = ann
        self.T = T
        self.chunk = chunk
        self.metrics = SNNMetrics(snn, T, input_shape)
        self.results: dict[str, Any] = {}

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch  # x: [B, C, H, W], y: [B]
        with self.metrics.attach(self.snn):
            outputs = self.snn(x, self.T, self.chunk)  # [T, B, classes]
        images = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        self.metrics.update(self.snn, outputs, y, self.ann(images).argmax(-1))

    def on_test_epoch_end(self) -> None:
        self.results = self.metrics.compute()
        self.metrics.reset()
