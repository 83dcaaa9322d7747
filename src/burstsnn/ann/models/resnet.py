"""The paper's ResNet20 (not He et al.'s): a 3-conv stem, 4 stages × 2 BasicBlocks, MaxPool, Linear."""

from __future__ import annotations

from torch import Tensor, nn

from burstsnn.activations import Activation, activation
from burstsnn.ann.models.head import classifier
from burstsnn.ann.models.vgg import scaled

STAGE_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
STEM_CHANNELS = 64
BLOCKS_PER_STAGE = 2


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> list[nn.Module]:
    """[Conv(k×k, stride, 'same' padding, no bias) → BN]."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
    )
    return [conv, nn.BatchNorm2d(out_channels)]


class BasicBlock(nn.Module):
    """x -> act(BN(conv(act(BN(conv(x))))) + shortcut(x)); x: [B, C, H, W] -> [B, C', H/s, W/s].

    The shortcut is the identity, or a 1×1 conv + BN where the shape changes. Each activation
    (ReLU by default) is its own module so that conversion gives each its own spiking neuron.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, act: Activation = activation("relu")
    ) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            *conv_bn(in_channels, out_channels, 3, stride),
            act(out_channels, True),
            *conv_bn(out_channels, out_channels, 3, 1),
        )
        changes_shape = stride != 1 or in_channels != out_channels
        self.shortcut = (
            nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
            if changes_shape
            else nn.Identity()
        )
        self.relu = act(out_channels, True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class ResNet20(nn.Module):
    """The paper's ResNet20: x: [B, in_channels, image_size, image_size] -> logits [B, num_classes].

    Stem 3 × [Conv3×3-64 → BN → ReLU]; stages of 64/128/256/512 channels (stride 2 from the
    second stage on), 2 BasicBlocks each; MaxPool2d(4); Linear. `width` scales every channel;
    `classifier_hidden` > 0 replaces the Linear by FC-activation-FC with that many hidden units;
    `act` makes each activation (ReLU, the paper's, by default; QCFS for a one-step conversion).
    """

    def __init__(
        self, num_classes: int, in_channels: int = 3, width: float = 1.0, image_size: int = 32,
        classifier_hidden: int = 0, act: Activation = activation("relu"),
    ) -> None:
        super().__init__()
        stem_out = scaled(STEM_CHANNELS, width)
        stem: list[nn.Module] = []
        channels = in_channels
        for _ in range(3):
            stem += [nn.Conv2d(channels, stem_out, 3, padding=1, bias=False),
                     nn.BatchNorm2d(stem_out), act(stem_out, True)]
            channels = stem_out
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        for stage, stage_channels in enumerate(STAGE_CHANNELS):
            out = scaled(stage_channels, width)
            for index in range(BLOCKS_PER_STAGE):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, out, stride, act))
                channels = out
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.MaxPool2d(4)
        side = image_size // 32
        self.flatten = nn.Flatten()
        self.classifier = classifier(channels * side * side, num_classes, classifier_hidden, act)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.stages(self.stem(x)))))
