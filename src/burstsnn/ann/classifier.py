"""The ANN as a LightningModule: the paper's training recipe and torchmetrics accuracy."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy


class ANNClassifier(pl.LightningModule):
    """Trains and validates `model` (x: [B, C, H, W] -> logits [B, classes]); its test
    accuracy is measured in the SNN's test pass (``burstsnn.measure.evaluate``).

    Recipe (paper §4.1): SGD with momentum, weight decay, cosine decay of the learning rate
    to 0 over all training steps, cross-entropy with label smoothing. The model's weights and
    the images are kept channels-last: 1.5× (training) to 3× (inference) faster convolutions
    on CPU for these narrow networks.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model.to(memory_format=torch.channels_last)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, C, H, W] -> logits [B, classes]."""
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """The recipe's loss: cross-entropy with label smoothing; logits [B, classes], y [B]."""
        return F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)

    def optimizer(self) -> torch.optim.SGD:
        """The recipe's optimiser over the model's parameters: SGD, momentum, weight decay."""
        return torch.optim.SGD(self.model.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                               weight_decay=self.hparams.weight_decay)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.train_acc(logits, y)
        self.log("ann/train_loss", loss, prog_bar=True)
        self.log("ann/train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def on_train_start(self) -> None:
        self.val_acc.reset()  # the sanity check filled it

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_acc(self(x), y)
        self.log("ann/val_acc", self.val_acc, prog_bar=True)

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer()
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
