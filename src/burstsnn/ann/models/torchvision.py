"""Any torchvision classification model by name, randomly initialised (nothing is downloaded),
for ``num_classes`` classes and ``in_channels`` input channels."""

from __future__ import annotations

from typing import Any

import torchvision
from torch import nn

# Builders with ImageNet-only extras: auxiliary heads (used in training only) and an input
# transform that assumes ImageNet's RGB normalisation. Off unless model.kwargs turns them on.
_OFF_BY_DEFAULT = {"googlenet": ("aux_logits", "transform_input"), "inception_v3": ("aux_logits", "transform_input")}


def classifiers() -> list[str]:
    """The names torchvision's classification registry knows (``torchvision.models.list_models``)."""
    return torchvision.models.list_models(module=torchvision.models)


def torchvision_model(arch: str, num_classes: int, in_channels: int, **kwargs: Any) -> nn.Module:
    """``torchvision.models.get_model(arch, weights=None, num_classes=..., **kwargs)`` whose first
    convolution, the stem's, takes ``in_channels`` channels (torchvision's take 3): where they
    differ it is replaced by a new, randomly initialised conv with the same kernel, stride,
    padding, dilation and bias. x: [B, in_channels, H, W] -> logits [B, num_classes]."""
    options = {**{name: False for name in _OFF_BY_DEFAULT.get(arch, ())}, **kwargs}
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **options)
    name, stem = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if stem.in_channels != in_channels:
        new = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                        stem.dilation, bias=stem.bias is not None)
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attribute, new)
    return model
