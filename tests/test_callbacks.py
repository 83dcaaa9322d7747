"""ConversionCallback used the way a user adds it to their own Lightning training."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
from torchmetrics.classification import MulticlassAccuracy

from burstsnn.ann.classifier import ANNClassifier
from burstsnn.ann.data import ImageDataModule
from burstsnn.ann.models import build_model
from burstsnn.conversion.convert import convert
from burstsnn.experiment.callbacks import ConversionCallback, ConversionSettings


def test_callback_converts_and_evaluates_after_fit(tiny_idx_root: Path) -> None:
    pl.seed_everything(0)
    data = ImageDataModule(root=str(tiny_idx_root), batch_size=32, eval_batch_size=32,
                           val_size=32)
    settings = ConversionSettings(p=99.9, gamma=2, pooling="lipool", reset="soft", v_init=0.0,
                                  theta_scale=0.5, channel_wise=False, calib_batches=1, T=5)
    callback = ConversionCallback(
        settings, lambda: pl.Trainer(logger=False, enable_progress_bar=False,
                                     enable_model_summary=False)
    )
    model = ANNClassifier(build_model("vgg16", 10, 1, width=0.125), num_classes=10)
    trainer = pl.Trainer(max_epochs=1, callbacks=[callback], logger=False,
                         enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    results = callback.results
    assert len(results["acc_over_t"]) == 5 and results["T"] == 5
    assert results["theta_scale"] == 0.5
    assert len(results["firing_rates"]) == 13 and len(results["pooling_correct_ratio"]) == 5
    assert results["timings"]["simulation_s"] > 0
    # The same conversion of the trained ANN, simulated here on the test set; the accuracy at t
    # of the output summed over steps 1..t, one sum at a time, scored by torchmetrics.
    snn = convert(model.model, data.calib_dataloader(), p=99.9, gamma=2, theta_scale=0.5)
    at_t = [MulticlassAccuracy(10, average="micro") for _ in range(5)]
    for x, y in data.test_dataloader():
        out, total = snn(x, 5), 0
        for t in range(5):
            total = total + out[t]
            at_t[t].update(total, y)
    assert results["acc_over_t"] == pytest.approx([float(metric.compute()) for metric in at_t])
