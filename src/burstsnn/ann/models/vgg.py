"""The paper's CIFAR-style VGG16: 13 × [Conv3×3 → BN → ReLU] with 5 MaxPools, one Linear."""

from __future__ import annotations

from torch import Tensor, nn

from burstsnn.activations import Activation, activation
from burstsnn.ann.models.head import classifier

# Channel plan of VGG16; "M" is a 2×2 MaxPool.
VGG16_PLAN: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


def scaled(channels: int, width: float) -> int:
    """Channel count scaled by `width`, at least 1."""
    return max(1, round(channels * width))


class VGG16(nn.Module):
    """VGG16 with BN for `image_size`×`image_size` inputs.

    x: [B, in_channels, image_size, image_size] -> logits [B, num_classes].
    `width` scales every channel count (1.0 = the paper's network); `classifier_hidden` > 0
    replaces the one Linear by FC-activation-FC with that many hidden units; `act` makes each
    activation (ReLU, the paper's, by default; QCFS for a one-step conversion).
    """

    def __init__(
        self, num_classes: int, in_channels: int = 3, width: float = 1.0, image_size: int = 32,
        classifier_hidden: int = 0, act: Activation = activation("relu"),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG16_PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            out = scaled(int(item), width)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), act(out, True)]
            channels = out
        self.features = nn.Sequential(*layers)
        side = image_size // 32
        self.flatten = nn.Flatten()
        self.classifier = classifier(channels * side * side, num_classes, classifier_hidden, act)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.features(x)))
