"""The ANNs: the paper's two, any torchvision classifier by name, or the user's own module
built from a `_target_`; `build_ann` builds the one the `model` config names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from burstsnn.activations import Activation, activation
from burstsnn.ann.models.resnet import ResNet20
from burstsnn.ann.models.torchvision import torchvision_model
from burstsnn.ann.models.vgg import VGG16
from burstsnn.errors import ConfigError
from burstsnn.rules import check, check_choice

MODELS: dict[str, type[nn.Module]] = {"vgg16": VGG16, "resnet20": ResNet20}  # the paper's
KINDS = (*MODELS, "torchvision", "custom")  # what model.name may be


def build_model(
    name: str, num_classes: int, in_channels: int, width: float = 1.0, image_size: int = 32,
    classifier_hidden: int = 0, act: Activation = activation("relu"),
) -> nn.Module:
    """Build the paper's named ANN (`vgg16` or `resnet20`) for `image_size`² inputs;
    `classifier_hidden` > 0 ends it with FC-activation-FC instead of one Linear; `act` makes its
    activations (ReLU, the paper's, by default)."""
    check_choice("model.name", name, MODELS)
    check("data.image_size", image_size)
    return MODELS[name](
        num_classes=num_classes, in_channels=in_channels, width=width, image_size=image_size,
        classifier_hidden=classifier_hidden, act=act,
    )


def build_ann(model: Mapping[str, Any]) -> nn.Module:
    """The untrained ANN of a `model` config (plain data): `name` vgg16 / resnet20 (the paper's,
    with `width`, `classifier_hidden` and `activation` relu or qcfs with `levels` and
    `clip_per_channel`), `torchvision` (`arch`, `kwargs`: any torchvision
    classifier) or `custom` (`net`: a `_target_` and its arguments, built by
    `hydra.utils.instantiate`). num_classes and in_channels come from the data set."""
    name = model["name"]
    if name == "torchvision":
        return torchvision_model(model["arch"], model["num_classes"], model["in_channels"], **model["kwargs"])
    if name == "custom":
        return custom_model(model["net"])
    act = activation(model["activation"], model["levels"], model["clip_per_channel"])
    return build_model(name, model["num_classes"], model["in_channels"], model["width"], model["image_size"],
                       model["classifier_hidden"], act)


def custom_model(net: Mapping[str, Any]) -> nn.Module:
    """`hydra.utils.instantiate(net)`: the user's factory (`net["_target_"]`, a dotted path)
    called with the other entries; ConfigError in one line if it cannot be built or builds
    something that is not an nn.Module."""
    target = net.get("_target_")
    try:
        built = instantiate(net)
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"model.net._target_={target!r} cannot be built: "
                          f"{str(cause).strip().splitlines()[-1]}") from None
    if not isinstance(built, nn.Module):
        raise ConfigError(f"model.net._target_={target!r} built a {type(built).__name__}, not a torch nn.Module")
    return built
