"""The SNN's test pass as a LightningModule: each test_step simulates T steps on a batch."""

from __future__ import annotations

import hashlib
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from burstsnn.conversion.recording import tensor_bytes
from burstsnn.measure.metrics import SNNMetrics
from burstsnn.snn.network import SpikingNetwork

# The ANN's predicted classes per (ANN key, batch digest), kept across the jobs of a process.
_kept_predictions: dict[tuple[str, str], Tensor] = {}
KEPT_BATCHES = 4096  # at most this many batches are kept (then the oldest go)


class SNNEvaluator(pl.LightningModule):
    """Simulates `snn` for `T` steps per test batch and accumulates SNNMetrics, with `ann`'s
    predictions on the same batch for the agreement over t.

    Lightning brings devices/DDP, progress bars and loggers; the metrics are torchmetrics,
    summed across ranks. After `trainer.test(...)`, `results` holds SNNMetrics.compute(),
    whose `ann_acc` is the job's ANN accuracy (images channels-last, as the ANN is trained
    and kept: the same logits as its own test pass).

    `ann_key` names the ANN's weights and architecture (e.g. its checkpoint's sha256 and model
    config): the ANN's predictions on each batch are then kept in the process, and a later
    evaluator with the same key reads them for the same images instead of running the ANN
    again (a search's trials test one ANN on the same images). None: always run the ANN.
    """

    def __init__(
        self, snn: SpikingNetwork, ann: nn.Module, T: int, input_shape: tuple[int, ...], chunk: int | None = None,
        ann_key: str | None = None,
    ) -> None:
        super().__init__()
        self.snn = snn
        self.ann = ann
        self.T = T
        self.chunk = chunk
        self.ann_key = ann_key
        self.metrics = SNNMetrics(snn, T, input_shape)
        self.results: dict[str, Any] = {}

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch  # x: [B, C, H, W], y: [B]
        with self.metrics.attach(self.snn):
            outputs = self.snn(x, self.T, self.chunk)  # [T, B, classes]
        self.metrics.update(self.snn, outputs, y, self.ann_predictions(x))

    def ann_predictions(self, x: Tensor) -> Tensor:
        """x: ``[B, ...]`` -> the ANN's classes ``[B]``, run on images channels-last, or read
        from an earlier evaluator with the same `ann_key` that ran it on the same images."""
        key = None
        if self.ann_key is not None:
            digest = hashlib.blake2b(tensor_bytes(x))
            setting = f"{self.ann_key}|{x.device.type}|{x.dtype}|{tuple(x.shape)}|{torch.get_num_threads()}"
            key = (setting, digest.hexdigest())
            if key in _kept_predictions:
                return _kept_predictions[key].to(x.device)
        images = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        predictions = self.ann(images).argmax(-1)
        if key is not None:
            if len(_kept_predictions) >= KEPT_BATCHES:
                del _kept_predictions[next(iter(_kept_predictions))]
            _kept_predictions[key] = predictions.cpu()
        return predictions

    def on_test_epoch_end(self) -> None:
        self.results = self.metrics.compute()
        self.metrics.reset()
