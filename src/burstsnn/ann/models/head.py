"""The classifier at the end of the paper's networks: one Linear, or FC-activation-FC."""

from __future__ import annotations

from torch import nn

from burstsnn.activations import Activation, activation


def classifier(
    in_features: int, num_classes: int, hidden: int = 0, act: Activation = activation("relu")
) -> nn.Module:
    """[B, in_features] -> logits [B, num_classes].

    ``hidden = 0``: one Linear (the paper's networks); ``hidden > 0``: Linear(in, hidden) →
    activation (``act``, ReLU by default) → Linear(hidden, classes), a two-layer classifier
    (one more spiking layer after conversion).
    """
    if hidden == 0:
        return nn.Linear(in_features, num_classes)
    return nn.Sequential(nn.Linear(in_features, hidden), act(hidden, False), nn.Linear(hidden, num_classes))
