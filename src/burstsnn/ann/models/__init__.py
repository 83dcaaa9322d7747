"""The paper's ANNs and a factory that builds one from the `model` config."""

from __future__ import annotations

from torch import nn

from burstsnn.ann.models.resnet import ResNet20
from burstsnn.ann.models.vgg import VGG16
from burstsnn.rules import check, check_choice

MODELS: dict[str, type[nn.Module]] = {"vgg16": VGG16, "resnet20": ResNet20}


def build_model(
    name: str, num_classes: int, in_channels: int, width: float = 1.0, image_size: int = 32,
    classifier_hidden: int = 0,
) -> nn.Module:
    """Build the named ANN (`vgg16` or `resnet20`) for `image_size`² inputs; `classifier_hidden`
    > 0 ends it with FC-ReLU-FC instead of one Linear."""
    check_choice("model.name", name, MODELS)
    check("data.image_size", image_size)
    return MODELS[name](
        num_classes=num_classes, in_channels=in_channels, width=width, image_size=image_size,
        classifier_hidden=classifier_hidden,
    )
